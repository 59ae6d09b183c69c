"""Hidden checks for ps05 `layer_norm(x, weight, bias, eps=1e-5)`, against `torch.nn.functional.layer_norm`
in float64 and against the properties LayerNorm must have.

One property per check: centring and scaling over the last dim (up to the variance convention), the biased
variance, constant tokens (eps), the affine weight and bias, and the reference with random eps.
"""

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check


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
    for seed, shape, eps in [(5502, (2, 7, 12), 1e-5), (5503, (9, 5), 0.1), (5504, (3, 2, 4, 6), 1e-3)]:
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
