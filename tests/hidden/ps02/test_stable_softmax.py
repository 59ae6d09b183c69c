"""Hidden checks for ps02 `stable_softmax(x, dim=-1)`, against `torch.softmax` in float64.

One property per check: the default (last) dim, the `dim` argument, scores like +-1000, -inf entries.
Only the large-scores check uses values that overflow a naive exp(x) / sum(exp(x)).
"""

import torch

from mastering_transformers.grading import check


def _error(stable_softmax, x: torch.Tensor, dim: int | None) -> float:
    """Max abs difference from the reference; inf when the result has the wrong type, shape or nan/inf."""
    w = stable_softmax(x) if dim is None else stable_softmax(x, dim=dim)
    assert isinstance(w, torch.Tensor), f"stable_softmax must return a tensor; got {type(w).__name__}"
    assert w.shape == x.shape, f"softmax keeps the shape of x {tuple(x.shape)}; got {tuple(w.shape)}"
    reference = torch.softmax(x.double(), dim=-1 if dim is None else dim)
    return float((w.double() - reference).abs().nan_to_num(float("inf")).max())


@check(points=1)
def test_last_dim(stable_softmax):
    """matches softmax over the last dim (the default)"""
    g = torch.Generator().manual_seed(2401)
    for shape in [(4, 7), (2, 3, 5), (9,), (1, 6), (2, 1, 5)]:
        x = 3 * torch.randn(*shape, generator=g)
        error = _error(stable_softmax, x, None)
        assert error < 1e-5, (
            f"stable_softmax(x) must be exp(x) / exp(x).sum() over the last dim; max error {error:.2g} "
            f"for x of shape {shape}"
        )


@check(points=1)
def test_dim(stable_softmax):
    """honours the dim argument"""
    g = torch.Generator().manual_seed(2402)
    x = 3 * torch.randn(3, 4, 5, generator=g)
    for dim in (0, 1, -2):
        error = _error(stable_softmax, x, dim)
        assert error < 1e-5, (
            f"stable_softmax(x, dim={dim}) must normalise along dim {dim} (x of shape (3, 4, 5)); max error "
            f"{error:.2g}: use `dim` for both the max and the sum, with keepdim=True"
        )


@check(points=1)
def test_large_scores(stable_softmax):
    """no overflow on scores like +-1000"""
    g = torch.Generator().manual_seed(2403)
    cases = [("around +1000", 1000 + 5 * torch.randn(4, 6, generator=g)),
             ("around -1000", -1000 + 5 * torch.randn(4, 6, generator=g)),
             ("hundreds apart", 400 * torch.randn(4, 6, generator=g))]
    for label, x in cases:
        error = _error(stable_softmax, x, None)
        assert error < 1e-5, (
            f"for scores {label} the max error is {error:.2g} (nan or inf once exp overflows): "
            "subtract the max along dim before exp"
        )


@check(points=1)
def test_neg_inf(stable_softmax):
    """-inf entries get weight exactly 0"""
    g = torch.Generator().manual_seed(2404)
    x = 3 * torch.randn(5, 6, generator=g)
    masked = torch.rand(5, 6, generator=g) < 0.4
    masked[torch.arange(5), torch.randint(0, 6, (5,), generator=g)] = False  # one finite entry per row
    masked[4, 1:] = True  # and a row with a single finite entry
    masked[4, 0] = False
    x = x.masked_fill(masked, float("-inf"))
    w = stable_softmax(x)
    assert isinstance(w, torch.Tensor) and w.shape == x.shape, "stable_softmax must return a tensor shaped like x"
    assert not torch.isnan(w).any(), (
        f"{int(torch.isnan(w).sum())} weights are nan for a row with -inf entries: -inf must become weight 0 "
        "(exp(-inf) = 0); avoid -inf - (-inf)"
    )
    leak = float(w[masked].abs().max())
    assert leak == 0, f"-inf entries must get weight exactly 0; got up to {leak:.3g}"
    error = float((w.double() - torch.softmax(x.double(), dim=-1)).abs().max())
    assert error < 1e-5, (
        f"with -inf entries the other weights must still be the softmax of the finite ones; max error {error:.2g}"
    )
