"""Hidden checks for ps05 `rms_norm(x, weight, eps=1e-6)`, against the closed form in float64 and against the
properties RMSNorm must have.

One property per check: unit root mean square over the last dim, no centring, all-zero tokens (eps), the
weight, the closed form with random eps, the default eps where it matters, and gradients that flow.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow


def _x(seed: int, shape: tuple, loc: float = 1.5, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return loc + scale * torch.randn(*shape, generator=g)


def _call(rms_norm, x, weight, eps=None) -> torch.Tensor:
    y = rms_norm(x, weight) if eps is None else rms_norm(x, weight, eps=eps)
    assert isinstance(y, torch.Tensor), f"rms_norm must return a tensor; got {type(y).__name__}"
    assert y.shape == x.shape, f"rms_norm keeps the shape of x {tuple(x.shape)}; got {tuple(y.shape)}"
    return y.double()


def _reference(x, weight, eps):
    x = x.double()
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.double()


@check(points=1)
def test_unit_rms(rms_norm):
    """each token's output has root mean square 1 over its features (weight 1)"""
    for seed, shape in [(6101, (3, 5, 7)), (6102, (6, 16)), (6103, (2, 2, 3, 4))]:
        x = _x(seed, shape)
        y = _call(rms_norm, x, torch.ones(shape[-1]))
        rms = y.pow(2).mean(-1).sqrt()
        worst = float((rms - 1).abs().nan_to_num(float("inf")).max())
        assert worst < 1e-3, (
            f"with weight 1 every token's output must have root mean square 1 over the last dim (x of shape "
            f"{shape}); got values from {float(rms.min()):.4g} to {float(rms.max()):.4g}: divide by "
            "sqrt(mean(x^2) + eps) taken over dim=-1 (the mean, not the sum)"
        )


@check(points=1)
def test_no_centring(rms_norm):
    """does not subtract the mean: each token's output is a positive multiple of x"""
    for seed, shape in [(6201, (4, 5, 6)), (6202, (7, 3))]:
        x = _x(seed, shape, loc=3.0, scale=1.0)
        y = _call(rms_norm, x, torch.ones(shape[-1]))
        xd = x.double()
        s = (y * xd).sum(-1, keepdim=True) / (xd * xd).sum(-1, keepdim=True)
        error = float((y - s * xd).abs().nan_to_num(float("inf")).max())
        assert error < 1e-4 and bool((s > 0).all()), (
            f"RMSNorm only rescales each token, so the output must be x times one positive number per token "
            f"(x of shape {shape}); max deviation {error:.3g}: do not subtract the mean (that is LayerNorm)"
        )


@check(points=1)
def test_zero_tokens(rms_norm):
    """an all-zero token gives zeros, not nan (eps)"""
    g = torch.Generator().manual_seed(6301)
    weight = torch.randn(5, generator=g)
    x = torch.zeros(2, 3, 5)
    x[0, 0] = torch.randn(5, generator=g)  # one ordinary token among the zeros
    y = _call(rms_norm, x, weight)
    assert torch.isfinite(y).all(), (
        "an all-zero token has mean square 0; without eps you divide 0 by 0 and get nan: "
        "divide by sqrt(mean(x^2) + eps)"
    )
    error = float(y[1:].abs().max() + y[0, 1:].abs().max())
    assert error < 1e-6, f"all-zero tokens must stay zero; got values up to {error:.3g}"


@check(points=1)
def test_weight(rms_norm):
    """multiplies by weight after normalising"""
    g = torch.Generator().manual_seed(6401)
    for shape in [(3, 4, 8), (5, 6)]:
        x = _x(6402 + len(shape), shape)
        weight = 2 * torch.randn(shape[-1], generator=g)
        x_hat = _call(rms_norm, x, torch.ones(shape[-1]))
        y = _call(rms_norm, x, weight)
        error = float((y - weight.double() * x_hat).abs().nan_to_num(float("inf")).max())
        assert error < 1e-4, (
            f"rms_norm(x, weight) must equal weight * rms_norm(x, ones) (x of shape {shape}); max error "
            f"{error:.3g}: multiply the normalised x by weight, feature by feature"
        )


@check(points=1)
def test_matches_reference(rms_norm):
    """matches x / sqrt(mean(x^2) + eps) * weight (random shapes, weight and eps)"""
    g = torch.Generator().manual_seed(6501)
    for seed, shape, eps in [(6502, (2, 7, 12), 1e-6), (6503, (9, 5), 0.1), (6504, (3, 2, 4, 6), 1e-3),
                             (6505, (1, 1, 5), 1e-6), (6506, (4, 1, 3), 0.5)]:
        x = _x(seed, shape, loc=-0.5, scale=0.6)
        weight = torch.randn(shape[-1], generator=g)
        y = _call(rms_norm, x, weight, eps=eps)
        error = float((y - _reference(x, weight, eps)).abs().nan_to_num(float("inf")).max())
        assert error < 1e-4, (
            f"for x of shape {shape} and eps={eps} the result differs from x / sqrt(mean(x^2) + eps) * weight "
            f"by up to {error:.3g}"
        )


@check(points=1)
def test_default_eps(rms_norm):
    """without an eps argument, eps is 1e-6 (it matters for tokens of tiny magnitude)"""
    g = torch.Generator().manual_seed(6601)
    x = 1e-3 * torch.randn(3, 8, generator=g, dtype=torch.float64)  # mean square ~1e-6, comparable with eps
    weight = torch.randn(8, generator=g, dtype=torch.float64)
    y = _call(rms_norm, x, weight)
    explicit = _call(rms_norm, x, weight, eps=1e-6)  # your own function, eps given: only the default differs
    error = float((y - explicit).abs().nan_to_num(float("inf")).max())
    assert error < 1e-9, (
        f"rms_norm(x, weight) differs from rms_norm(x, weight, eps=1e-6) by {error:.3g} on tokens whose mean "
        "square is about 1e-6, where eps matters: keep the signature's default eps=1e-6"
    )


@check(points=1)
def test_gradient(rms_norm):
    """gradients flow to x and weight (no detached root mean square)"""
    g = torch.Generator().manual_seed(6701)
    cases = [(1 + 2 * torch.randn(*shape, generator=g, dtype=torch.float64),
              torch.randn(shape[-1], generator=g, dtype=torch.float64)) for shape in [(2, 3, 6), (4, 5), (1, 1, 4)]]
    assert_gradients_flow(rms_norm, cases, wrt=(0, 1), what="rms_norm", seed=6702)
