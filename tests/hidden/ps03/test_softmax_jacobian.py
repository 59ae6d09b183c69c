"""Hidden checks for ps03 `softmax_jacobian(p)`, against autograd's Jacobian of `torch.softmax`
(`torch.autograd.functional.jacobian`) in float64.

One property per check: the batched shape, one distribution, every distribution of a batch, rows summing to 0.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import largest


def _scores(seed: int, shape: tuple) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(*shape, generator=g, dtype=torch.float64)


def _autograd_jacobian(s: torch.Tensor) -> torch.Tensor:
    """d softmax(s) / d s for one row s (T,): (T, T)."""
    with torch.enable_grad():
        return torch.autograd.functional.jacobian(lambda z: torch.softmax(z, dim=-1), s)


def _jacobian(softmax_jacobian, p: torch.Tensor) -> torch.Tensor:
    J = softmax_jacobian(p.clone())
    assert isinstance(J, torch.Tensor), f"softmax_jacobian must return a tensor; got {type(J).__name__}"
    expected = (*p.shape, p.shape[-1])
    assert tuple(J.shape) == expected, (
        f"for p of shape {tuple(p.shape)} the Jacobians must have shape (..., T, T) = {expected}; got {tuple(J.shape)}"
    )
    return J.double()


def _error(J: torch.Tensor, reference: torch.Tensor) -> float:
    return largest(J - reference)


@check(points=1)
def test_shape(softmax_jacobian):
    """shape: (..., T) -> (..., T, T), leading dims included"""
    for seed, shape in [(4001, (2, 3, 5)), (4002, (4, 6)), (4003, (7,)), (4004, (1, 1, 3))]:
        _jacobian(softmax_jacobian, torch.softmax(_scores(seed, shape), dim=-1))


@check(points=1)
def test_one_distribution(softmax_jacobian):
    """one distribution p (T,): matches autograd's Jacobian of the softmax"""
    for seed, t in [(4101, 5), (4102, 9)]:
        s = _scores(seed, (t,))
        error = _error(_jacobian(softmax_jacobian, torch.softmax(s, dim=-1)), _autograd_jacobian(s))
        assert error < 1e-12, (
            f"for T = {t} the Jacobian differs from autograd's by up to {error:.2g}: J[i, j] = p_i (1 if i == j "
            "else 0) - p_i p_j, i.e. diag(p) - p p^T"
        )


@check(points=1)
def test_batched(softmax_jacobian):
    """a batch (..., T): each distribution gets its own Jacobian"""
    for seed, lead, t in [(4201, (2, 3), 4), (4202, (5,), 6)]:
        s = _scores(seed, (*lead, t))
        J = _jacobian(softmax_jacobian, torch.softmax(s, dim=-1)).reshape(-1, t, t)
        rows = s.reshape(-1, t)
        errors = [_error(J[n], _autograd_jacobian(rows[n])) for n in range(rows.shape[0])]
        worst = max(range(len(errors)), key=errors.__getitem__)
        assert errors[worst] < 1e-12, (
            f"for p of shape {(*lead, t)}, the Jacobian of distribution {worst} (flattened) differs from autograd's by "
            f"{errors[worst]:.2g}: build diag(p) - p p^T for every row, e.g. with torch.diag_embed and broadcasting "
            "(torch.diag and torch.outer are for single vectors)"
        )


@check(points=1)
def test_rows_sum_to_zero(softmax_jacobian):
    """every row of J sums to 0: adding a constant to all scores changes no weight"""
    for seed, t in [(4301, 6), (4302, 11)]:
        J = _jacobian(softmax_jacobian, torch.softmax(_scores(seed, (t,)), dim=-1))
        top = largest(J.sum(dim=-1))
        assert top < 1e-12, (
            f"the rows of J must sum to 0 (sum_j p_i delta_ij - p_i p_j = p_i - p_i = 0); for T = {t} a row sums to "
            f"{top:.3g}: keep both the diag(p) term and the -p p^T term"
        )
