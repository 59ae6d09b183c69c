"""Hidden checks for ps06 `gelu(x)`, against `torch.nn.functional.gelu` (the exact erf form) in float64.

One property per check: the limits (0 at 0, ~x for large x, ~0 for very negative x), closeness to GELU on
random inputs (an approximation passes this one), the exact erf form (an approximation does not), and gradients
that flow through both factors of x * Phi(x).
"""

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow


def _gelu(gelu, x: torch.Tensor) -> torch.Tensor:
    y = gelu(x)
    assert isinstance(y, torch.Tensor), f"gelu must return a tensor; got {type(y).__name__}"
    assert y.shape == x.shape, f"gelu acts elementwise: the shape of x {tuple(x.shape)} must be kept; got {tuple(y.shape)}"
    return y.double()


def _max_error(y: torch.Tensor, x: torch.Tensor) -> float:
    return float((y - F.gelu(x.double())).abs().nan_to_num(float("inf")).max())


@check(points=1)
def test_limits(gelu):
    """GELU(0) = 0, GELU(x) ~ x for large x, ~ 0 for very negative x (|x| >= 10)"""
    x = torch.tensor([0.0, 10.0, 20.0, 50.0, -10.0, -20.0, -50.0], dtype=torch.float64)
    y = _gelu(gelu, x)
    expected = torch.tensor([0.0, 10.0, 20.0, 50.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    error = float((y - expected).abs().nan_to_num(float("inf")).max())
    assert error < 1e-3, (
        f"GELU(x) = x * Phi(x) is 0 at 0, close to x for large x (Phi -> 1) and close to 0 for very negative "
        f"x (Phi -> 0); for x = {x.tolist()} got {[round(v, 4) for v in y.tolist()]}"
    )


@check(points=1)
def test_close_to_gelu(gelu):
    """matches GELU on random inputs (within 1e-3)"""
    g = torch.Generator().manual_seed(6101)
    for shape in [(7, 5), (2, 3, 4), (50,)]:
        x = 2.5 * torch.randn(*shape, generator=g, dtype=torch.float64)
        error = _max_error(_gelu(gelu, x), x)
        assert error < 1e-3, (
            f"gelu(x) must be x * Phi(x) with Phi(x) = (1 + erf(x / sqrt(2))) / 2, the standard normal CDF; "
            f"max error {error:.2g} for x of shape {shape}"
        )


@check(points=1)
def test_exact_form(gelu):
    """is the exact erf form, not an approximation (within 1e-6)"""
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    error = _max_error(_gelu(gelu, x), x)
    assert error < 1e-6, (
        f"max error {error:.2g} against the exact x * (1 + erf(x / sqrt(2))) / 2 on [-5, 5] (in float64): "
        "use torch.erf, not the tanh or sigmoid approximation"
    )


@check(points=1)
def test_gradient(gelu):
    """gradients flow through x and through Phi(x) (a network trains through GELU)"""
    g = torch.Generator().manual_seed(6150)
    cases = [(2 * torch.randn(*shape, generator=g, dtype=torch.float64),) for shape in [(7, 5), (1, 1, 4), (30,)]]
    assert_gradients_flow(gelu, cases, wrt=(0,), what="gelu", seed=6151)
