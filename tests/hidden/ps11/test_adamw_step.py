"""Hidden checks for ps11 `adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
weight_decay=1e-2) -> (new_param, new_exp_avg, new_exp_avg_sq)`, against the closed form of one AdamW step written
here and `torch.optim.AdamW` run over several steps, in float64 (and float32):

    m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,
    param = param (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),   t = step, counted from 1.

One property per check: the two running averages; the bias correction (eps = 0, no decay: at step 1 every weight
moves by exactly lr); where eps goes (outside the square root, after the bias correction); the decoupled weight
decay (the step with decay minus the step without is exactly -lr wd param, and the averages do not see the decay);
several steps side by side with torch.optim.AdamW, with the defaults, float32 and size-1 and 0-dim parameters. The
proxy fails any call that changes an input tensor in place.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _step(adamw_step, param, *args, **kwargs):
    """(new_param, new_exp_avg, new_exp_avg_sq) from the student's step, type, shapes and dtype checked."""
    result = adamw_step(param, *args, **kwargs)
    assert isinstance(result, (tuple, list)) and len(result) == 3, (
        f"adamw_step must return a tuple (new_param, new_exp_avg, new_exp_avg_sq); got {type(result).__name__}"
        + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
    )
    for value, what in zip(result, ("new_param", "new_exp_avg", "new_exp_avg_sq")):
        expect_tensor(value, what, tuple(param.shape))
        assert value.dtype == param.dtype, f"{what} must keep the parameter's dtype {param.dtype}; got {value.dtype}"
    return result


def _state(seed: int, shape: tuple, scale: float = 1.0, dtype=torch.float64):
    """param, grad, exp_avg, exp_avg_sq: a state as after some earlier steps (v >= 0)."""
    g = torch.Generator().manual_seed(seed)

    def r():
        return torch.randn(shape, generator=g, dtype=torch.float64)

    param, grad = r(), scale * r()
    exp_avg, exp_avg_sq = 0.5 * scale * r(), (scale * r()) ** 2
    return [t.to(dtype) for t in (param, grad, exp_avg, exp_avg_sq)]


def _closed_form(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
    b1, b2 = betas
    m = b1 * exp_avg + (1 - b1) * grad
    v = b2 * exp_avg_sq + (1 - b2) * grad * grad
    m_hat, v_hat = m / (1 - b1**step), v / (1 - b2**step)
    return param * (1 - lr * weight_decay) - lr * m_hat / (v_hat.sqrt() + eps), m, v


@check(points=1)
def test_moments(adamw_step):
    """the running averages: m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2"""
    cases = [(11500, (3, 4), 7, (0.9, 0.999)), (11501, (1,), 1, (0.8, 0.95)), (11502, (2, 1, 5), 25, (0.5, 0.9)),
             (11503, (), 3, (0.9, 0.99))]
    for seed, shape, t, betas in cases:
        param, grad, m, v = _state(seed, shape)
        _, new_m, new_v = _step(adamw_step, param, grad, m, v, t, lr=1e-2, betas=betas, eps=1e-8, weight_decay=0.1)
        _, ref_m, ref_v = _closed_form(param, grad, m, v, t, 1e-2, betas, 1e-8, 0.1)
        error_m, error_v = largest(new_m.double() - ref_m), largest(new_v.double() - ref_v)
        assert error_m < 1e-12, (
            f"new_exp_avg must be b1 * exp_avg + (1 - b1) * grad with betas = {betas} (the raw average, before any "
            f"bias correction); max error {error_m:.2g} for shape {shape}"
        )
        assert error_v < 1e-12, (
            f"new_exp_avg_sq must be b2 * exp_avg_sq + (1 - b2) * grad**2 with betas = {betas} (the raw average of "
            f"the squared gradient, before any bias correction); max error {error_v:.2g} for shape {shape}"
        )


@check(points=1)
def test_bias_correction(adamw_step):
    """bias correction by 1 - beta^t, t = step from 1: the first step moves every weight by lr"""
    g = torch.Generator().manual_seed(11600)
    for seed, shape, lr, betas in [(11601, (4, 3), 1e-2, (0.9, 0.999)), (11602, (6,), 0.3, (0.8, 0.95))]:
        param, grad, _, _ = _state(seed, shape, scale=float(torch.rand((), generator=g)) * 1e-3 + 1e-5)
        zeros = torch.zeros_like(param)
        new_param, _, _ = _step(adamw_step, param, grad, zeros, zeros, 1, lr=lr, betas=betas, eps=0.0,
                                weight_decay=0.0)
        moved = (new_param.double() - param) / lr
        error = largest(moved + grad.sign())
        assert error < 1e-9, (
            f"at step 1 (exp_avg = exp_avg_sq = 0, eps = 0, no decay) the bias-corrected averages are m_hat = g and "
            f"v_hat = g^2, so every weight must move by exactly -lr * sign(g), whatever the size of g; your step "
            f"divided by lr is off by up to {error:.2g}: divide m by 1 - b1**step and v by 1 - b2**step, step = 1"
        )
    for seed, shape, t, betas in [(11610, (3, 5), 2, (0.9, 0.999)), (11611, (2, 1, 2), 13, (0.8, 0.95)),
                                  (11612, (7,), 150, (0.9, 0.99))]:
        param, grad, m, v = _state(seed, shape)
        new_param, _, _ = _step(adamw_step, param, grad, m, v, t, lr=0.05, betas=betas, eps=0.0, weight_decay=0.0)
        expected, _, _ = _closed_form(param, grad, m, v, t, 0.05, betas, 0.0, 0.0)
        error = largest(new_param.double() - expected) / 0.05
        assert error < 1e-9, (
            f"at step {t} with betas = {betas} (eps = 0, no decay) the update must be lr * m_hat / sqrt(v_hat) with "
            f"m_hat = m / (1 - b1**{t}) and v_hat = v / (1 - b2**{t}) (step counts from 1 and is this step's "
            f"number); your step divided by lr is off by up to {error:.2g}"
        )


@check(points=1)
def test_eps(adamw_step):
    """eps added to sqrt(v_hat), outside the square root and after the bias correction"""
    cases = [(11700, (5, 4), 3, (0.9, 0.999), 1e-3), (11701, (8,), 1, (0.9, 0.95), 2e-3),
             (11702, (1, 3), 40, (0.8, 0.999), 5e-4)]
    for seed, shape, t, betas, eps in cases:
        param, grad, m, v = _state(seed, shape, scale=1e-3)
        new_param, _, _ = _step(adamw_step, param, grad, m, v, t, lr=0.1, betas=betas, eps=eps, weight_decay=0.0)
        expected, _, _ = _closed_form(param, grad, m, v, t, 0.1, betas, eps, 0.0)
        error = largest(new_param.double() - expected) / 0.1
        assert error < 1e-9, (
            f"with gradients about 1e-3 and eps = {eps:g} at step {t} the update must be lr * m_hat / "
            f"(sqrt(v_hat) + eps): eps outside the square root, added after dividing v by 1 - b2**step; your step "
            f"divided by lr is off by up to {error:.2g}"
        )


@check(points=1)
def test_decoupled_weight_decay(adamw_step):
    """decoupled weight decay: the param shrinks by lr * wd * param; the averages never see it"""
    cases = [(11800, (4, 4), 2, 0.1, 0.1), (11801, (3,), 9, 0.3, 0.5), (11802, (2, 1, 3), 100, 1e-2, 0.05),
             (11803, (), 4, 0.2, 1.0)]
    for seed, shape, t, lr, wd in cases:
        param, grad, m, v = _state(seed, shape)
        kwargs = dict(lr=lr, betas=(0.9, 0.95), eps=1e-8)
        with_decay = _step(adamw_step, param, grad, m, v, t, weight_decay=wd, **kwargs)
        without = _step(adamw_step, param, grad, m, v, t, weight_decay=0.0, **kwargs)
        moments = max(largest(with_decay[1].double() - without[1].double()),
                      largest(with_decay[2].double() - without[2].double()))
        assert moments < 1e-12, (
            f"with weight_decay={wd} the running averages changed by up to {moments:.2g} compared with "
            f"weight_decay=0: AdamW's decay is decoupled, it never enters the gradient (adding wd * param to the "
            f"gradient is L2 regularisation, what Adam does, not AdamW)"
        )
        difference = with_decay[0].double() - without[0].double()
        error = largest(difference + lr * wd * param)
        assert error < 1e-12, (
            f"with lr={lr} and weight_decay={wd} the new param minus the one without decay must be exactly "
            f"-lr * wd * param (shrink the param by the factor 1 - lr * wd, applied to the param before this step's "
            f"update); max error {error:.2g}"
        )


def _torch_adamw(param, grads, lrs, **kwargs):
    """param, exp_avg, exp_avg_sq after len(grads) steps of torch.optim.AdamW, the lr changed before each."""
    p = torch.nn.Parameter(param.clone())
    optimizer = torch.optim.AdamW([p], foreach=False, **kwargs)
    for grad, lr in zip(grads, lrs):
        if lr is not None:
            optimizer.param_groups[0]["lr"] = lr
        p.grad = grad.clone()
        optimizer.step()
    state = optimizer.state[p]
    return p.detach(), state["exp_avg"], state["exp_avg_sq"]


@check(points=1)
def test_matches_torch_adamw(adamw_step):
    """8 steps side by side with torch.optim.AdamW: defaults, float32, size-1 and 0-dim params"""
    cases = [  # shape, dtype, gradient scale, lr (None: the defaults), betas, eps, weight decay
        ((4, 3), torch.float64, 1.0, 1e-2, (0.9, 0.95), 1e-8, 0.1),
        ((5,), torch.float64, 10.0, 3e-2, (0.8, 0.99), 1e-6, 0.0),
        ((2, 1, 3), torch.float32, 1.0, 1e-2, (0.9, 0.999), 1e-8, 0.05),
        ((1,), torch.float64, 1.0, None, None, None, None),
        ((), torch.float64, 1e-6, 1e-3, (0.9, 0.999), 1e-8, 0.01),
        ((3, 1), torch.float64, 1e-4, None, None, None, None),
    ]
    for seed, (shape, dtype, scale, lr, betas, eps, wd) in enumerate(cases):
        g = torch.Generator().manual_seed(11900 + seed)
        param = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        grads = [(scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype) for _ in range(8)]
        if lr is None:  # the defaults, on both sides
            lrs, kwargs, options = [None] * 8, {}, {}
        else:
            lrs = [lr * (0.5 + float(torch.rand((), generator=g))) for _ in range(8)]
            kwargs = dict(betas=betas, eps=eps, weight_decay=wd)
            options = dict(lr=lrs[0], **kwargs)
        p, m, v = param, torch.zeros_like(param), torch.zeros_like(param)
        for t, (grad, step_lr) in enumerate(zip(grads, lrs), start=1):
            if step_lr is None:
                p, m, v = _step(adamw_step, p, grad, m, v, t)
            else:
                p, m, v = _step(adamw_step, p, grad, m, v, t, lr=step_lr, **kwargs)
        ref_p, ref_m, ref_v = _torch_adamw(param, grads, lrs, **options)
        tolerance = 1e-10 if dtype == torch.float64 else 1e-5
        setting = "the default lr, betas, eps and weight_decay" if lr is None else (
            f"betas={betas}, eps={eps:g}, weight_decay={wd}, lr changing every step")
        errors = [largest(a.double() - b.double()) / largest(b) for a, b in ((p, ref_p), (m, ref_m), (v, ref_v))]
        assert max(errors) < tolerance, (
            f"after 8 steps on a {dtype} param of shape {shape} (gradients about {scale:g}, {setting}) your param, "
            f"exp_avg and exp_avg_sq differ from torch.optim.AdamW's by {errors[0]:.2g}, {errors[1]:.2g} and "
            f"{errors[2]:.2g} (relative)"
            + ("; the defaults must be torch.optim.AdamW's: lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2"
               if lr is None else "")
        )
