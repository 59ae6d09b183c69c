"""Hidden checks for ps13 `loss_scale_step(params, scaled_grads, scale, good_steps, lr, growth_factor=2.0,
backoff_factor=0.5, growth_interval=2000) -> (new_params, new_scale, new_good_steps, skipped)`, against a
reference written out here (what torch.amp.GradScaler does around an SGD step):

    g = scaled_grad.float() / scale for every tensor
    if any g is inf or nan:   params unchanged, scale * backoff_factor, good_steps 0, skipped True
    else:                     p - lr * g (in float32, back to p's dtype), good_steps + 1, and when that reaches
                              growth_interval: scale * growth_factor, good_steps 0; skipped False

One property per check: the unscaled step (float16 gradients, float32 and bfloat16 parameters); a step skipped on
inf and -inf; a step skipped on nan (anywhere in any tensor); the scale grows after growth_interval good steps and
only then; the result's types and shapes (0-dim and size-1 parameters).
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


def _reference(params, grads, scale, good, lr, growth=2.0, backoff=0.5, interval=2000):
    unscaled = [g.float() / scale for g in grads]
    if not all(torch.isfinite(u).all() for u in unscaled):
        return [p.clone() for p in params], scale * backoff, 0, True
    new = [(p.float() - lr * u).to(p.dtype) for p, u in zip(params, unscaled)]
    good += 1
    if good >= interval:
        return new, scale * growth, 0, False
    return new, scale, good, False


def _case(seed, shapes, param_dtype=torch.float32, grad_dtype=torch.float16, scale=2.0**12):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g).to(param_dtype) for s in shapes]
    grads = [(torch.randn(s, generator=g) * 1e-4 * scale).to(grad_dtype) for s in shapes]
    return params, grads


def _call(fn, params, grads, *args, **kwargs):
    out = fn(params, grads, *args, **kwargs)
    assert isinstance(out, (tuple, list)) and len(out) == 4, (
        f"return (new_params, new_scale, new_good_steps, skipped); got {type(out).__name__}"
    )
    new_params, scale, good, skipped = out
    assert isinstance(new_params, (list, tuple)) and len(new_params) == len(params), (
        f"new_params must be a list with one tensor per parameter ({len(params)})"
    )
    return list(new_params), scale, good, skipped


SHAPES = [[(4, 3), (3,), (1, 5), ()], [(7, 2, 2), (1,)], [(2, 6)]]


@check(points=1)
def test_finite_step(loss_scale_step):
    """a finite step: gradients divided by the scale (in float32), then p - lr * g"""
    for i, (shapes, pdt) in enumerate([(SHAPES[0], torch.float32), (SHAPES[1], torch.bfloat16),
                                      (SHAPES[2], torch.float64)]):
        params, grads = _case(13900 + i, shapes, pdt)
        scale, lr = 2.0 ** (10 + 3 * i), [0.1, 1e-3, 0.5][i]
        new, _, _, skipped = _call(loss_scale_step, params, grads, scale, 5, lr)
        ref, _, _, _ = _reference(params, grads, scale, 5, lr)
        assert skipped is False or skipped == 0, "all gradients are finite: the step must not be skipped"
        for k, (p, r) in enumerate(zip(new, ref)):
            p = expect_tensor(p, f"new_params[{k}]", tuple(r.shape))
            tol = 1e-2 if pdt == torch.bfloat16 else 1e-6
            err = (p.double() - r.double()).abs().max().item() if r.numel() else 0.0
            assert err <= tol * (1 + r.double().abs().max().item() if r.numel() else 1), (
                f"parameter {k} (shape {tuple(r.shape)}, {pdt}) after the step differs by {err:.3g} from "
                f"p - lr * grad / scale with scale={scale:g}, lr={lr}: unscale the gradients (divide by the scale, "
                f"in float32) before the update"
            )


@check(points=1)
def test_inf_skips(loss_scale_step):
    """an inf or -inf gradient: step skipped, parameters unchanged, scale x backoff, good_steps back to 0"""
    for i, bad in enumerate([math.inf, -math.inf]):
        params, grads = _case(14000 + i, SHAPES[0])
        grads[1 + i] = grads[1 + i].clone()
        grads[1 + i].view(-1)[0] = bad
        for backoff in (0.5, 0.25):
            new, scale, good, skipped = _call(loss_scale_step, params, grads, 2.0**16, 17, 0.1, backoff_factor=backoff)
            assert bool(skipped) is True, f"a gradient holds {bad}: the step must be skipped (skipped=True)"
            for k, (p, q) in enumerate(zip(new, params)):
                assert torch.equal(torch.as_tensor(p), q), f"skipped step: parameter {k} must stay as it was"
            assert float(scale) == 2.0**16 * backoff, (
                f"after an overflow the scale must become scale * backoff_factor = {2.0**16 * backoff:g}; got {scale}"
            )
            assert int(good) == 0, f"after an overflow the count of good steps restarts at 0; got {good}"


@check(points=1)
def test_nan_skips(loss_scale_step):
    """a nan gradient anywhere: the step is skipped too"""
    for i, shapes in enumerate(SHAPES):
        params, grads = _case(14100 + i, shapes)
        k = len(grads) - 1 if shapes[-1] != () else 0
        grads[k] = grads[k].clone()
        grads[k].view(-1)[-1] = math.nan
        new, scale, good, skipped = _call(loss_scale_step, params, grads, 1024.0, 3, 0.1)
        assert bool(skipped) is True, (
            f"gradient {k} holds a nan: skip the step (check every value with torch.isfinite, not only isinf)"
        )
        assert float(scale) == 512.0 and int(good) == 0, f"skipped on nan: scale 512 and good_steps 0; got {scale}, {good}"
        for j, (p, q) in enumerate(zip(new, params)):
            assert torch.equal(torch.as_tensor(p), q), f"skipped step: parameter {j} must stay as it was"


@check(points=1)
def test_growth(loss_scale_step):
    """after growth_interval good steps in a row the scale grows by growth_factor, and the count restarts"""
    params, grads = _case(14200, SHAPES[1])
    for interval, growth in [(3, 2.0), (5, 4.0), (1, 2.0)]:
        scale, good = 256.0, 0
        for step in range(2 * interval + 1):
            _, new_scale, new_good, _ = _call(loss_scale_step, params, grads, scale, good, 0.01,
                                             growth_factor=growth, growth_interval=interval)
            _, ref_scale, ref_good, _ = _reference(params, grads, scale, good, 0.01, growth, 0.5, interval)
            assert float(new_scale) == ref_scale and int(new_good) == ref_good, (
                f"growth_interval={interval}, growth_factor={growth}: from scale {scale:g} and good_steps {good}, a good "
                f"step must give scale {ref_scale:g} and good_steps {ref_good}; got {new_scale}, {new_good} (grow when "
                f"the count of good steps reaches growth_interval, then restart it at 0)"
            )
            scale, good = ref_scale, ref_good
    _, s, g, _ = _call(loss_scale_step, params, grads, 8.0, 1998, 0.01)
    assert float(s) == 8.0 and int(g) == 1999, f"default growth_interval is 2000: 1998 -> 1999 good steps; got {s}, {g}"
    _, s, g, _ = _call(loss_scale_step, params, grads, 8.0, 1999, 0.01)
    assert float(s) == 16.0 and int(g) == 0, f"the 2000th good step doubles the scale (default): got {s}, {g}"


@check(points=1)
def test_types(loss_scale_step):
    """new tensors of each parameter's shape and dtype, a float scale, an int count, a bool"""
    for pdt in (torch.float32, torch.bfloat16):
        params, grads = _case(14300, SHAPES[0], pdt)
        new, scale, good, skipped = _call(loss_scale_step, params, grads, 64.0, 0, 0.1)
        for k, (p, q) in enumerate(zip(new, params)):
            p = expect_tensor(p, f"new_params[{k}]", tuple(q.shape))
            assert p.dtype == q.dtype, f"new_params[{k}] must keep the parameter's dtype {q.dtype}; got {p.dtype}"
        assert isinstance(scale, float), f"new_scale must be a Python float; got {type(scale).__name__}"
        assert type(good) is int, f"new_good_steps must be a Python int; got {type(good).__name__}"
        assert type(skipped) is bool, f"skipped must be a Python bool; got {type(skipped).__name__}"
