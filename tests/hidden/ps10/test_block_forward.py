"""Hidden checks for ps10 `block_forward(x, params, n_head)`, a Pre-LN GPT block from its weight tensors, against
`mt.Block` (GPT-2 style: LayerNorm, causal multi-head attention, exact-GELU MLP of width 4C, Pre-LN) loaded with the
same random weights, run in float64 on the trusted side.

`params` holds the tensors of `dict(mt.Block(C, n_head, bias=...).state_dict())`: torch.nn.Linear weights of shape
(out, in), so a layer computes h @ W.T + b; a block built with bias=False has no ".bias" entries. The norms' gains
and shifts and every bias are random here, so none of them can be ignored.

One property per check: the attention half (the MLP's output projection zeroed), the MLP half (attention's output
projection zeroed), causality, the whole block with and without biases (size-1 batch and T = 1 included, float32
as well), and the gradient with respect to x, which chapter 11 trains through: the vector-Jacobian product from
autograd in the student's process must agree with finite differences of the student's own forward pass, so a
wrong forward pass is not charged twice.
"""

import torch

import mastering_transformers as mt
from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _params(seed: int, c: int, bias: bool = True, zero: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Random float64 weights with the names and shapes of mt.Block(c, ..., bias=bias)'s state_dict."""
    g = torch.Generator().manual_seed(seed)
    shapes = {name: tuple(p.shape) for name, p in mt.Block(c, 1, bias=bias).state_dict().items()}
    params = {}
    for name, shape in shapes.items():
        r = torch.randn(*shape, generator=g, dtype=torch.float64)
        if name.startswith("norm") and name.endswith(".weight"):
            params[name] = 1 + 0.3 * r  # LayerNorm gains
        elif name.endswith(".bias"):
            params[name] = 0.3 * r
        else:
            params[name] = r / shape[1] ** 0.5  # a (out, in) linear weight
    for prefix in zero:  # e.g. "mlp.fc_out": that sublayer then outputs exactly 0
        for name in list(params):
            if name.startswith(prefix + "."):
                params[name] = torch.zeros_like(params[name])
    return params


def _x(seed: int, b: int, t: int, c: int) -> torch.Tensor:
    """A residual stream far from normalised (mean 0.5, spread 2), in float64."""
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(b, t, c, generator=g, dtype=torch.float64) + 0.5


def _reference(x: torch.Tensor, params: dict, n_head: int) -> torch.Tensor:
    c = x.shape[-1]
    block = mt.Block(c, n_head, bias="norm_1.bias" in params).double().eval()
    block.load_state_dict({k: v.double() for k, v in params.items()})
    with torch.no_grad():
        return block(x.double())  # is_causal=True: a decoder block


def _run(block_forward, x, params, n_head) -> torch.Tensor:
    out = block_forward(x, params, n_head)
    expect_tensor(out, f"block_forward on x of shape {tuple(x.shape)}", tuple(x.shape))
    assert out.dtype == x.dtype, f"block_forward must return x's dtype {x.dtype}; got {out.dtype}"
    return out


def _error(out, reference) -> float:
    return largest(out.double() - reference.double())


@check(points=1)
def test_attention_half(block_forward):
    """attention half: with the MLP's output zeroed, the block is x + attn(ln_1(x)), causal, scaled by 1/sqrt(D)"""
    for seed, (b, t, c, h) in enumerate([(2, 6, 12, 3), (3, 5, 16, 4), (1, 7, 8, 1)]):
        params = _params(11100 + seed, c, zero=("mlp.fc_out",))
        x = _x(11150 + seed, b, t, c)
        error = _error(_run(block_forward, x, params, h), _reference(x, params, h))
        assert error < 1e-8, (
            f"with the MLP's output projection zeroed the block must be x + attn(ln_1(x)) (x: {(b, t, c)}, "
            f"{h} heads); max error {error:.2g}. Check: LayerNorm before attention, q/k/v = h @ W.T + b split "
            f"into heads of D = C / n_head, scores / sqrt(D), future keys masked, W_O, and x added back"
        )


@check(points=1)
def test_mlp_half(block_forward):
    """MLP half: with attention's output zeroed, the block is x + fc_out(gelu(fc_in(ln_2(x))))"""
    for seed, (b, t, c, h) in enumerate([(2, 5, 12, 3), (1, 4, 8, 2), (3, 1, 6, 1)]):
        params = _params(11200 + seed, c, zero=("attn.o_proj",))
        x = _x(11250 + seed, b, t, c)
        error = _error(_run(block_forward, x, params, h), _reference(x, params, h))
        assert error < 1e-8, (
            f"with attention's output projection zeroed the block must be x + mlp(ln_2(x)), with "
            f"mlp(h) = gelu(h @ W_in.T + b_in) @ W_out.T + b_out and the exact GELU (x: {(b, t, c)}); max error "
            f"{error:.2g}: the MLP reads the normalised stream and its output is added to the stream"
        )


@check(points=1)
def test_causal(block_forward):
    """causal: changing the token at position s changes no output before s"""
    for seed, (b, t, c, h, s) in enumerate([(2, 6, 12, 3, 3), (1, 5, 8, 2, 1), (2, 7, 16, 4, 6)]):
        params = _params(11300 + seed, c)
        x = _x(11350 + seed, b, t, c)
        x_changed = x.clone()
        # a random vector, not a constant: LayerNorm would erase a constant shift of the token's features
        x_changed[:, s] += 1.5 * torch.randn(b, c, generator=torch.Generator().manual_seed(11360 + seed),
                                             dtype=torch.float64)
        before, after = _run(block_forward, x, params, h), _run(block_forward, x_changed, params, h)
        leak = largest(after[:, :s] - before[:, :s])
        assert leak < 1e-10, (
            f"changing the token at position {s} (of T = {t}) changed the outputs at earlier positions by up to "
            f"{leak:.2g}: query i may attend to keys j <= i only; mask the scores where j > i with -inf"
        )
        moved = largest(after[:, s] - before[:, s])
        assert moved > 1e-6, f"changing the token at position {s} must change the output at position {s} itself"


@check(points=1)
def test_matches_block(block_forward):
    """matches mt.Block with the same weights, with and without biases, size-1 batch and T = 1 included"""
    cases = [(2, 6, 12, 3), (1, 1, 8, 2), (1, 5, 16, 4), (3, 4, 6, 1), (2, 1, 10, 5)]
    for bias in (True, False):
        for seed, (b, t, c, h) in enumerate(cases):
            params = _params(11400 + seed + 10 * bias, c, bias=bias)
            x = _x(11450 + seed, b, t, c)
            error = _error(_run(block_forward, x, params, h), _reference(x, params, h))
            assert error < 1e-8, (
                f"with bias={bias}, x of shape {(b, t, c)} and {h} heads the output differs from a Pre-LN GPT block "
                f"with the same weights by up to {error:.2g}"
                + ("" if bias else ": a block built with bias=False has no '.bias' entries in params (use "
                   "params.get(name), and no shift in its LayerNorms)")
            )
    params = _params(11490, 12)
    x = _x(11491, 2, 5, 12)
    out = _run(block_forward, x.float(), {k: v.float() for k, v in params.items()}, 3)
    error = _error(out, _reference(x, params, 3))
    assert error < 1e-4, f"in float32 (x of shape (2, 5, 12), 3 heads) the output differs by up to {error:.2g}"


@check(points=1)
def test_gradient(block_forward):
    """gradient with respect to x: autograd through your block agrees with finite differences of it"""
    for seed, (b, t, c, h) in enumerate([(2, 5, 12, 3), (1, 4, 8, 2)]):
        params = _params(11500 + seed, c)
        x = _x(11550 + seed, b, t, c)
        g = torch.Generator().manual_seed(11560 + seed)
        cotangent = torch.randn(b, t, c, generator=g, dtype=torch.float64)
        out, (grad,) = block_forward.vjp((x, params, h), cotangent, wrt=(0,))
        expect_tensor(out, "block_forward's output", (b, t, c))
        grad = expect_tensor(grad, "the gradient with respect to x", (b, t, c)).double()
        for _ in range(2):
            direction = torch.randn(b, t, c, generator=g, dtype=torch.float64)
            eps = 1e-6
            plus = _run(block_forward, x + eps * direction, params, h).double()
            minus = _run(block_forward, x - eps * direction, params, h).double()
            numeric = float(((plus - minus) * cotangent).sum()) / (2 * eps)
            analytic = float((grad * direction).sum())
            gap = abs(numeric - analytic) / max(1.0, abs(numeric))
            assert gap < 1e-5, (
                f"the gradient of your block with respect to x (autograd) does not match its finite differences "
                f"(relative gap {gap:.2g}, x: {(b, t, c)}): keep every step differentiable; no .detach(), .item(), "
                f".data or torch.no_grad() on the way from x to the output (e.g. in the LayerNorm statistics)"
            )
