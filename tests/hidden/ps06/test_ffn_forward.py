"""Hidden checks for ps06 `ffn_forward(x, w1, b1, w2, b2)`, against GELU(x w1 + b1) w2 + b2 written with
`torch.nn.functional.gelu`, in float64.

While these checks run, the student's `gelu` is replaced by the reference in ISOLATE, so a bug in `gelu`
is not charged a second time here.
"""

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check

ISOLATE = {"gelu": F.gelu}


def _params(seed: int, c: int, d_ff: int, zero_bias: bool = False):
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(c, d_ff, generator=g, dtype=torch.float64) / c**0.5
    w2 = torch.randn(d_ff, c, generator=g, dtype=torch.float64) / d_ff**0.5
    b1, b2 = torch.randn(d_ff, generator=g, dtype=torch.float64), torch.randn(c, generator=g, dtype=torch.float64)
    if zero_bias:
        b1, b2 = torch.zeros_like(b1), torch.zeros_like(b2)
    return w1, b1, w2, b2


def _call(ffn_forward, x, params) -> torch.Tensor:
    out = ffn_forward(x, *params)
    assert isinstance(out, torch.Tensor), f"ffn_forward must return a tensor; got {type(out).__name__}"
    assert out.shape == x.shape, (
        f"the FFN maps (..., C) to (..., C): for x {tuple(x.shape)} and w1 {tuple(params[0].shape)} the output "
        f"must have shape {tuple(x.shape)}; got {tuple(out.shape)}"
    )
    return out.double()


@check(points=1)
def test_shape(ffn_forward):
    """shape: (..., C) -> (..., C), with d_ff != C"""
    for seed, lead, c, d_ff in [(6201, (2, 5), 4, 16), (6202, (3,), 6, 10), (6203, (2, 3, 2), 3, 12),
                                   (6204, (1, 1), 3, 5)]:
        g = torch.Generator().manual_seed(seed)
        _call(ffn_forward, torch.randn(*lead, c, generator=g, dtype=torch.float64), _params(seed, c, d_ff))


@check(points=1)
def test_nonlinear(ffn_forward):
    """is nonlinear: with zero biases, f(x + y) != f(x) + f(y)"""
    g = torch.Generator().manual_seed(6301)
    params = _params(6302, 5, 20, zero_bias=True)
    x, y = torch.randn(2, 8, 5, generator=g, dtype=torch.float64)
    fx, fy, fxy = (_call(ffn_forward, t, params) for t in (x, y, x + y))
    gap = float((fxy - fx - fy).abs().max() / (fx.abs().max() + fy.abs().max()))
    assert gap > 0.05, (
        f"with zero biases your FFN satisfies f(x + y) = f(x) + f(y) (relative gap {gap:.2g}): it is linear, "
        "so it collapses to one matrix; apply gelu between the two matrix products"
    )


@check(points=1)
def test_matches_reference(ffn_forward):
    """matches GELU(x w1 + b1) w2 + b2"""
    for seed, lead, c, d_ff in [(6401, (2, 5), 4, 16), (6402, (7,), 6, 9)]:
        g = torch.Generator().manual_seed(seed)
        x, params = torch.randn(*lead, c, generator=g, dtype=torch.float64), _params(seed, c, d_ff)
        w1, b1, w2, b2 = params
        error = float((_call(ffn_forward, x, params) - (F.gelu(x @ w1 + b1) @ w2 + b2)).abs().nan_to_num(float("inf")).max())
        assert error < 1e-6, (
            f"ffn_forward must compute gelu(x @ w1 + b1) @ w2 + b2 (the activation between the two layers, "
            f"each bias inside its own layer); max error {error:.2g} for x {tuple(x.shape)}, w1 {tuple(w1.shape)}"
        )
