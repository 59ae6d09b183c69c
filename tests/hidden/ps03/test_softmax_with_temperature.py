"""Hidden checks for ps03 `softmax_with_temperature(x, tau, dim=-1)`, against `torch.softmax(x / tau)` in float64.

One property per check: tau = 1 over the last dim, other temperatures, the `dim` argument, large scores (at several
temperatures, rows far apart), gradients. Only the large-scores check uses values that overflow a naive
exp(x) / sum(exp(x)).
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow, largest


def _error(softmax_with_temperature, x: torch.Tensor, tau: float, dim: int | None = None) -> float:
    """Max abs difference from the reference; inf when the result has nan/inf."""
    p = softmax_with_temperature(x, tau) if dim is None else softmax_with_temperature(x, tau, dim=dim)
    assert isinstance(p, torch.Tensor), f"softmax_with_temperature must return a tensor; got {type(p).__name__}"
    assert p.shape == x.shape, f"the softmax keeps the shape of x {tuple(x.shape)}; got {tuple(p.shape)}"
    reference = torch.softmax(x.double() / tau, dim=-1 if dim is None else dim)
    return largest(p.double() - reference)


@check(points=1)
def test_tau_one(softmax_with_temperature):
    """tau = 1 is the plain softmax over the last dim"""
    g = torch.Generator().manual_seed(3501)
    for shape in [(4, 7), (2, 3, 5), (9,)]:
        x = 3 * torch.randn(*shape, generator=g)
        error = _error(softmax_with_temperature, x, 1.0)
        assert error < 1e-5, (
            f"with tau = 1 the result must be exp(x) / exp(x).sum() over the last dim; max error {error:.2g} for "
            f"x of shape {shape}"
        )


@check(points=1)
def test_temperature(softmax_with_temperature):
    """the scores are divided by tau: softmax(x / tau)"""
    g = torch.Generator().manual_seed(3502)
    x = 3 * torch.randn(5, 8, generator=g)
    for tau in (0.5, 2.0, 10.0, 0.25):
        error = _error(softmax_with_temperature, x, tau)
        assert error < 1e-5, (
            f"with tau = {tau} the result must be softmax(x / tau) (tau > 1 flattens the weights, tau < 1 sharpens "
            f"them); max error {error:.2g}"
        )


@check(points=1)
def test_dim(softmax_with_temperature):
    """honours the dim argument"""
    g = torch.Generator().manual_seed(3503)
    x = 3 * torch.randn(3, 4, 5, generator=g)
    for dim in (0, 1, -2):
        error = _error(softmax_with_temperature, x, 1.0, dim)
        assert error < 1e-5, (
            f"softmax_with_temperature(x, tau, dim={dim}) must normalise along dim {dim} (x of shape (3, 4, 5)); max "
            f"error {error:.2g}: use `dim` for both the max and the sum, with keepdim=True"
        )


@check(points=1)
def test_large_scores(softmax_with_temperature):
    """no overflow on scores like +-1000, row by row"""
    g = torch.Generator().manual_seed(3504)
    rows_apart = torch.stack([1000 + 5 * torch.randn(6, generator=g), -1000 + 5 * torch.randn(6, generator=g)])
    cases = [("around +1000", 1000 + 5 * torch.randn(4, 6, generator=g)),
             ("around -1000", -1000 + 5 * torch.randn(4, 6, generator=g)),
             ("hundreds apart", 400 * torch.randn(4, 6, generator=g)),
             ("one row near +1000 and one near -1000", rows_apart)]
    for label, x in cases:
        error = _error(softmax_with_temperature, x, 1.0)
        assert error < 1e-5, (
            f"for scores {label} the max error is {error:.2g} (nan or inf once exp overflows or every term "
            "underflows): subtract the max along dim (keepdim=True) before exp"
        )


@check(points=1)
def test_large_scores_any_temperature(softmax_with_temperature):
    """no overflow on scores like +-1000 at temperatures other than 1"""
    g = torch.Generator().manual_seed(3507)
    small = 3 * torch.randn(4, 6, generator=g)
    for tau, offsets in [(0.5, 1000.0), (4.0, 1000.0), (0.1, 1000.0), (0.5, -1000.0), (4.0, -1000.0)]:
        # softmax is unchanged when a row is shifted by a constant: your result on the large scores must equal
        # your own result on the same rows shifted back near 0 (whatever tau does)
        p_large = softmax_with_temperature(small + offsets, tau)
        p_small = softmax_with_temperature(small, tau)
        for p in (p_large, p_small):
            assert isinstance(p, torch.Tensor) and p.shape == small.shape, (
                f"softmax_with_temperature must return a tensor of the shape of x {tuple(small.shape)}"
            )
        gap = largest(p_large.double() - p_small.double())
        assert gap < 1e-5, (
            f"with tau = {tau}, rows of scores near +-1000 give results that differ by {gap:.2g} from the same rows "
            "shifted near 0 (nan or inf once exp overflows or underflows): subtract the max of x / tau along dim "
            "(keepdim=True), not the max of x, before exp"
        )


@check(points=1)
def test_gradient(softmax_with_temperature):
    """gradients flow to x (attention trains through this softmax)"""
    g = torch.Generator().manual_seed(3505)
    cases = [(3 * torch.randn(*shape, generator=g, dtype=torch.float64), tau)
             for shape, tau in [((4, 7), 1.0), ((2, 3, 5), 0.5), ((1, 6), 2.0)]]
    assert_gradients_flow(softmax_with_temperature, cases, wrt=(0,), what="softmax_with_temperature", seed=3506)
