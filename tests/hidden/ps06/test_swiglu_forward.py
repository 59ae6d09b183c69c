"""Hidden checks for ps06 `swiglu_forward(x, w_gate, w_up, w_down)`, against
(silu(x w_gate) * (x w_up)) w_down written with `torch.nn.functional.silu`, in float64.

One property per check: the shape, the values, linearity in the up branch (silu on the wrong branch fails
it), a zero gate giving a zero output (a sigmoid gate, as in the original GLU, fails it), and gradients to x and
the three weights.
"""

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow


def _weights(seed: int, c: int, d_ff: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(c, d_ff, generator=g, dtype=torch.float64) / c**0.5,
            torch.randn(c, d_ff, generator=g, dtype=torch.float64) / c**0.5,
            torch.randn(d_ff, c, generator=g, dtype=torch.float64) / d_ff**0.5)


def _call(swiglu_forward, x, w_gate, w_up, w_down) -> torch.Tensor:
    out = swiglu_forward(x, w_gate, w_up, w_down)
    assert isinstance(out, torch.Tensor), f"swiglu_forward must return a tensor; got {type(out).__name__}"
    assert out.shape == x.shape, (
        f"SwiGLU maps (..., C) to (..., C): for x {tuple(x.shape)}, w_gate {tuple(w_gate.shape)} and w_down "
        f"{tuple(w_down.shape)} the output must have shape {tuple(x.shape)}; got {tuple(out.shape)}"
    )
    return out.double()


@check(points=1)
def test_shape(swiglu_forward):
    """shape: (..., C) -> (..., C), with d_ff != C"""
    for seed, lead, c, d_ff in [(6501, (2, 5), 6, 16), (6502, (4,), 3, 8), (6503, (2, 2, 3), 5, 7),
                                   (6504, (1, 1), 4, 6)]:
        g = torch.Generator().manual_seed(seed)
        _call(swiglu_forward, torch.randn(*lead, c, generator=g, dtype=torch.float64), *_weights(seed, c, d_ff))


@check(points=1)
def test_matches_reference(swiglu_forward):
    """matches (silu(x w_gate) * (x w_up)) w_down"""
    for seed, lead, c, d_ff in [(6601, (2, 5), 6, 16), (6602, (9,), 4, 11)]:
        g = torch.Generator().manual_seed(seed)
        x, (w_gate, w_up, w_down) = torch.randn(*lead, c, generator=g, dtype=torch.float64), _weights(seed, c, d_ff)
        reference = (F.silu(x @ w_gate) * (x @ w_up)) @ w_down
        error = float((_call(swiglu_forward, x, w_gate, w_up, w_down) - reference).abs().nan_to_num(float("inf")).max())
        assert error < 1e-6, (
            f"swiglu_forward must compute (silu(x @ w_gate) * (x @ w_up)) @ w_down with silu(z) = z * sigmoid(z); "
            f"max error {error:.2g} for x {tuple(x.shape)}, d_ff = {d_ff}"
        )


@check(points=1)
def test_linear_in_up_branch(swiglu_forward):
    """silu gates x w_gate; the up branch x w_up stays linear"""
    g = torch.Generator().manual_seed(6701)
    w_gate, w_up1, w_down = _weights(6702, 5, 12)
    w_up2 = torch.randn(5, 12, generator=g, dtype=torch.float64) / 5**0.5
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    a, b = 1.5, -0.7
    f1, f2 = _call(swiglu_forward, x, w_gate, w_up1, w_down), _call(swiglu_forward, x, w_gate, w_up2, w_down)
    mixed = _call(swiglu_forward, x, w_gate, a * w_up1 + b * w_up2, w_down)
    gap = float((mixed - (a * f1 + b * f2)).abs().nan_to_num(float("inf")).max() / (f1.abs().max() + f2.abs().max()))
    assert gap < 1e-8, (
        f"for fixed x and w_gate the output must be linear in w_up (relative gap {gap:.2g}): the silu belongs "
        "on x @ w_gate only, and x @ w_up multiplies it unchanged; check that the two branches are not swapped"
    )


@check(points=1)
def test_zero_gate(swiglu_forward):
    """a zero gate gives a zero output (silu(0) = 0)"""
    g = torch.Generator().manual_seed(6801)
    _, w_up, w_down = _weights(6802, 4, 10)
    x = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    out = _call(swiglu_forward, x, torch.zeros(4, 10, dtype=torch.float64), w_up, w_down)
    largest = float(out.abs().nan_to_num(float("inf")).max())
    assert largest < 1e-12, (
        f"with w_gate = 0 the gate is silu(0) = 0 * sigmoid(0) = 0, so the output must be 0; got values up to "
        f"{largest:.3g}: the gate is silu(z) = z * sigmoid(z), not sigmoid(z)"
    )


@check(points=1)
def test_gradient(swiglu_forward):
    """gradients flow to x, w_gate, w_up and w_down"""
    g = torch.Generator().manual_seed(6750)
    cases = [(torch.randn(*lead, c, generator=g, dtype=torch.float64), *_weights(6751 + k, c, d_ff))
             for k, (lead, c, d_ff) in enumerate([((2, 3), 4, 6), ((1,), 3, 5)])]
    assert_gradients_flow(swiglu_forward, cases, wrt=(0, 1, 2, 3), what="swiglu_forward", seed=6752)
