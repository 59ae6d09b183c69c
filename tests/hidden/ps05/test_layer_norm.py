"""Hidden checks for ps05 `layer_norm(x, weight, bias, eps=1e-5)`, against `torch.nn.functional.layer_norm`
in float64 and against the properties LayerNorm must have.

One property per check: centring and scaling over the last dim (up to the variance convention), the biased
variance, constant tokens (eps), the affine weight and bias, the reference with random eps, the default eps where
it matters, and gradients that flow (chapter 5 trains through LayerNorm).
"""

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow


def _x(seed: int, shape: tuple, loc: float = 2.0, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return loc + scale * torch.randn(*shape, generator=g)


def _call(layer_norm, x, weight, bias, eps=None) -> torch.Tensor:
    y = layer_norm(x, weight, bias) if eps is None else layer_norm(x, weight, bias, eps=eps)
    assert isinstance(y, torch.Tensor), f"layer_norm must return a tensor; got {type(y).__name__}"
    assert y.shape == x.shape, f"layer_norm keeps the shape of x {tuple(x.shape)}; got {tuple(y.shape)}"
    return y.double()


def _plain(c: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(c), torch.zeros(c)


@check(points=1)
def test_last_dim(layer_norm):
    """centres and scales each token over its features (the last dim)"""
    for seed, shape in [(5101, (3, 5, 7)), (5102, (6, 16)), (5103, (2, 3, 4, 9))]:
        x = _x(seed, shape)
        y = _call(layer_norm, x, *_plain(shape[-1]))
        centred = x.double() - x.double().mean(-1, keepdim=True)
        row_means = y.mean(-1).abs().nan_to_num(float("inf")).max()
        assert row_means < 1e-4, (
            f"for x of shape {shape}, every token (row along the last dim) must have mean 0 after layer_norm; "
            f"got a mean of up to {float(row_means):.3g}: subtract the mean over dim=-1 (not over the batch or time)"
        )
        s = (y * centred).sum(-1, keepdim=True) / (centred * centred).sum(-1, keepdim=True)
        error = float((y - s * centred).abs().nan_to_num(float("inf")).max())
        assert error < 1e-4 and bool((s > 0).all()), (
            f"for x of shape {shape}, each token's output must be (x - mean) divided by one positive number per "
            f"token (its std); max deviation {error:.3g}: take mean and variance over dim=-1 with keepdim=True"
        )


@check(points=1)
def test_biased_variance(layer_norm):
    """divides by the biased variance (mean of squares over C, not C - 1)"""
    for seed, shape in [(5201, (4, 3)), (5202, (2, 5, 4))]:
        x = _x(seed, shape)
        y = _call(layer_norm, x, *_plain(shape[-1]))
        mean_square = y.pow(2).mean(-1)
        worst = float((mean_square - 1).abs().nan_to_num(float("inf")).max())
        assert worst < 1e-3, (
            f"with weight 1 and bias 0 each token's output must have mean square 1 (x of shape {shape}); got "
            f"values from {float(mean_square.min()):.4g} to {float(mean_square.max()):.4g}: use the biased "
            "variance, the mean of (x - mean)^2 over the C features (unbiased=False / correction=0)"
        )


@check(points=1)
def test_constant_tokens(layer_norm):
    """a constant token (all features equal, e.g. zeros) gives the bias, not nan (eps)"""
    g = torch.Generator().manual_seed(5301)
    weight, bias = torch.randn(6, generator=g), torch.randn(6, generator=g)
    for value in (0.0, 2.5, -7.0):
        x = torch.full((2, 3, 6), value)
        y = _call(layer_norm, x, weight, bias)
        assert torch.isfinite(y).all(), (
            f"a token whose features are all {value} has variance 0; without eps you divide 0 by 0 and get nan: "
            "compute (x - mean) / sqrt(var + eps)"
        )
        error = float((y - bias.double()).abs().max())
        assert error < 1e-5, f"a constant token has x - mean = 0, so its output is the bias; max error {error:.3g}"


@check(points=1)
def test_weight_and_bias(layer_norm):
    """applies weight and bias after normalising: weight * x_hat + bias"""
    g = torch.Generator().manual_seed(5401)
    for shape in [(3, 4, 8), (5, 6)]:
        x = _x(5402 + len(shape), shape)
        c = shape[-1]
        weight, bias = 2 * torch.randn(c, generator=g), torch.randn(c, generator=g)
        x_hat = _call(layer_norm, x, *_plain(c))
        y = _call(layer_norm, x, weight, bias)
        error = float((y - (weight.double() * x_hat + bias.double())).abs().nan_to_num(float("inf")).max())
        assert error < 1e-4, (
            f"layer_norm(x, weight, bias) must equal weight * x_hat + bias, where x_hat = layer_norm(x, 1, 0) "
            f"(x of shape {shape}); max error {error:.3g}: multiply by weight and add bias after normalising"
        )


@check(points=1)
def test_matches_reference(layer_norm):
    """matches torch.nn.functional.layer_norm (random shapes, weight, bias and eps)"""
    g = torch.Generator().manual_seed(5501)
    for seed, shape, eps in [(5502, (2, 7, 12), 1e-5), (5503, (9, 5), 0.1), (5504, (3, 2, 4, 6), 1e-3),
                             (5505, (1, 1, 5), 1e-5), (5506, (4, 1, 3), 0.5)]:
        x = _x(seed, shape, loc=-1.0, scale=0.5)
        c = shape[-1]
        weight, bias = torch.randn(c, generator=g), torch.randn(c, generator=g)
        y = _call(layer_norm, x, weight, bias, eps=eps)
        reference = F.layer_norm(x.double(), (c,), weight.double(), bias.double(), eps=eps)
        error = float((y - reference).abs().nan_to_num(float("inf")).max())
        assert error < 1e-4, (
            f"for x of shape {shape} and eps={eps} the result differs from LayerNorm by up to {error:.3g}: "
            "(x - mean) / sqrt(var + eps) * weight + bias, with eps inside the square root"
        )


@check(points=1)
def test_default_eps(layer_norm):
    """without an eps argument, eps is 1e-5 (it matters for tokens of tiny variance)"""
    g = torch.Generator().manual_seed(5601)
    x = 2e-3 * torch.randn(3, 8, generator=g, dtype=torch.float64)  # variance ~4e-6, comparable with eps
    weight, bias = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    y = _call(layer_norm, x, weight, bias)
    explicit = _call(layer_norm, x, weight, bias, eps=1e-5)  # your own function, eps given: only the default differs
    error = float((y - explicit).abs().nan_to_num(float("inf")).max())
    assert error < 1e-9, (
        f"layer_norm(x, weight, bias) differs from layer_norm(x, weight, bias, eps=1e-5) by {error:.3g} on tokens "
        "whose variance is about 4e-6, where eps matters: keep the signature's default eps=1e-5"
    )


@check(points=1)
def test_gradient(layer_norm):
    """gradients flow to x, weight and bias (no detached mean or variance)"""
    g = torch.Generator().manual_seed(5701)
    cases = []
    for shape in [(2, 3, 6), (4, 5), (1, 1, 4)]:
        c = shape[-1]
        cases.append((1 + 2 * torch.randn(*shape, generator=g, dtype=torch.float64),
                      torch.randn(c, generator=g, dtype=torch.float64), torch.randn(c, generator=g, dtype=torch.float64)))
    assert_gradients_flow(layer_norm, cases, wrt=(0, 1, 2), what="layer_norm", seed=5702)
