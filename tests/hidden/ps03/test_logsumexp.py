"""Hidden checks for ps03 `logsumexp(x, dim=-1)`, against `torch.logsumexp` in float64.

One property per check: the shape (dim removed, size-1 dims kept), the value over the last dim, the `dim` argument,
values like +-1000 (exp overflows float64 beyond 709), rows far apart from each other, -inf entries, and gradients. The value checks compare the numbers even when the shape is
wrong (a kept dimension is charged once, by the shape check).
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow, largest


def _result(logsumexp, x: torch.Tensor, dim: int | None) -> torch.Tensor:
    out = logsumexp(x) if dim is None else logsumexp(x, dim=dim)
    assert isinstance(out, torch.Tensor), f"logsumexp must return a tensor; got {type(out).__name__}"
    return out


def _values(logsumexp, x: torch.Tensor, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(result, reference), the result reshaped like the reference when only the kept dim differs."""
    reference = torch.logsumexp(x, dim=-1 if dim is None else dim)
    out = _result(logsumexp, x, dim)
    assert out.numel() == reference.numel(), (
        f"logsumexp over dim {-1 if dim is None else dim} of x {tuple(x.shape)} must give one number per slice, "
        f"shape {tuple(reference.shape)}; got {tuple(out.shape)}"
    )
    return out.reshape(reference.shape).double(), reference


def _error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return largest((out - reference) / (1 + reference.abs()))


@check(points=1)
def test_shape(logsumexp):
    """shape: the reduced dim is dropped, (..., T) -> (...)"""
    g = torch.Generator().manual_seed(3601)
    for shape, dim in [((4, 7), None), ((2, 3, 5), None), ((3, 4, 5), 0), ((3, 4, 5), 1), ((9,), None),
                       ((1, 6), None), ((1, 1, 4), None), ((2, 1, 3), 2), ((5, 1), 0)]:
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        out = _result(logsumexp, x, dim)
        expected = tuple(torch.logsumexp(x, dim=-1 if dim is None else dim).shape)
        assert tuple(out.shape) == expected, (
            f"logsumexp of x {shape} over dim {-1 if dim is None else dim} must have shape {expected} (the dim is "
            f"summed away, as in torch.logsumexp; no keepdim); got {tuple(out.shape)}"
        )


@check(points=1)
def test_last_dim(logsumexp):
    """log(sum(exp(x))) over the last dim (the default)"""
    g = torch.Generator().manual_seed(3602)
    for shape in [(4, 7), (2, 3, 5), (9,)]:
        x = 3 * torch.randn(*shape, generator=g, dtype=torch.float64)
        error = _error(*_values(logsumexp, x))
        assert error < 1e-9, (
            f"logsumexp(x) must be log(sum(exp(x))) over the last dim; relative error {error:.2g} for x of shape "
            f"{shape}: after subtracting the max m, add it back, m + log(sum(exp(x - m)))"
        )


@check(points=1)
def test_dim(logsumexp):
    """honours the dim argument"""
    g = torch.Generator().manual_seed(3603)
    x = 3 * torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    for dim in (0, 1, -2):
        error = _error(*_values(logsumexp, x, dim))
        assert error < 1e-9, (
            f"logsumexp(x, dim={dim}) must reduce along dim {dim} (x of shape (3, 4, 5)); relative error "
            f"{error:.2g}: take the max and the sum along `dim`"
        )


@check(points=1)
def test_large_values(logsumexp):
    """no overflow on values like +-1000"""
    g = torch.Generator().manual_seed(3604)
    cases = [("around +1000", 1000 + 5 * torch.randn(4, 6, generator=g, dtype=torch.float64)),
             ("around -1000", -1000 + 5 * torch.randn(4, 6, generator=g, dtype=torch.float64)),
             ("hundreds apart", 400 * torch.randn(4, 6, generator=g, dtype=torch.float64)),
             ("in rows far apart (one row near +1000, the next near -1000)",
              torch.stack([1000 + 5 * torch.randn(6, generator=g, dtype=torch.float64),
                           -1000 + 5 * torch.randn(6, generator=g, dtype=torch.float64)]))]
    for label, x in cases:
        error = _error(*_values(logsumexp, x))
        assert error < 1e-9, (
            f"for values {label} the relative error is {error:.2g} (inf or nan once exp overflows or underflows): "
            "use m + log(sum(exp(x - m))) with m the max along dim (one max per slice, not one for the whole tensor)"
        )


@check(points=1)
def test_neg_inf(logsumexp):
    """-inf entries add nothing; a slice of only -inf gives -inf"""
    g = torch.Generator().manual_seed(3605)
    x = 3 * torch.randn(5, 6, generator=g, dtype=torch.float64)
    masked = torch.rand(5, 6, generator=g) < 0.4
    masked[torch.arange(4), torch.randint(0, 6, (4,), generator=g)] = False  # rows 0-3: some finite entries
    masked[4] = True  # row 4: all -inf, as for a fully masked query
    x = x.masked_fill(masked, float("-inf"))
    out, reference = _values(logsumexp, x)
    assert not torch.isnan(out).any(), (
        f"rows {torch.isnan(out).nonzero().flatten().tolist()} are nan: a row of only -inf has max m = -inf and "
        "x - m = -inf - (-inf) = nan; shift such a row by 0 instead, so that the result is log(0) = -inf"
    )
    assert float(out[4]) == float("-inf"), (
        f"a row of only -inf must give -inf (the log of an empty sum); got {float(out[4])}"
    )
    error = _error(out[:4], reference[:4])
    assert error < 1e-9, f"with -inf entries, the rest must still give log(sum(exp(x))); relative error {error:.2g}"


@check(points=1)
def test_gradient(logsumexp):
    """gradients flow to x (the softmax of x, the chapter's cross-entropy trains through it)"""
    g = torch.Generator().manual_seed(3606)
    cases = [(3 * torch.randn(*shape, generator=g, dtype=torch.float64),) for shape in [(4, 7), (2, 3, 5), (1, 6)]]
    assert_gradients_flow(logsumexp, cases, wrt=(0,), what="logsumexp", seed=3607)
