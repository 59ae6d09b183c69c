"""Hidden checks for ps02 `attention_scores(q, k)`, against the reference q_i . k_j / sqrt(d_k) (einsum).

Each check looks at one property: the shape, the dot products (up to a scale), the scale itself.
"""

import math

import torch

from mastering_transformers.grading import check


def _qk(seed: int, lead: tuple, t_q: int, t_k: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, t_q, d, generator=g), torch.randn(*lead, t_k, d, generator=g)


def _dot_products(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.einsum("...id,...jd->...ij", q.double(), k.double())


def _fit_scale(scores: torch.Tensor, reference: torch.Tensor) -> float:
    """The c that makes c * reference closest to scores (least squares)."""
    return float((scores.double() * reference).sum() / (reference * reference).sum())


def _scores(attention_scores, q, k) -> torch.Tensor:
    s = attention_scores(q, k)
    assert isinstance(s, torch.Tensor), f"attention_scores must return a tensor; got {type(s).__name__}"
    expected = (*q.shape[:-1], k.shape[-2])
    assert tuple(s.shape) == expected, (
        f"for q {tuple(q.shape)} and k {tuple(k.shape)} the scores must have shape (..., T_q, T_k) = "
        f"{expected}; got {tuple(s.shape)}"
    )
    assert torch.isfinite(s).all(), f"the scores contain inf or nan for q {tuple(q.shape)}, k {tuple(k.shape)}"
    return s


@check(points=1)
def test_shape(attention_scores):
    """shape: (..., T_q, D), (..., T_k, D) -> (..., T_q, T_k)"""
    for seed, lead, t_q, t_k, d in [(2101, (2, 3), 5, 7, 4), (2102, (), 6, 3, 9), (2103, (4,), 1, 8, 2)]:
        _scores(attention_scores, *_qk(seed, lead, t_q, t_k, d))


@check(points=1)
def test_dot_products(attention_scores):
    """entries are the dot products q_i . k_j"""
    for seed, lead, t_q, t_k, d in [(2201, (3,), 6, 5, 8), (2202, (2, 2), 4, 9, 3)]:
        q, k = _qk(seed, lead, t_q, t_k, d)
        s, reference = _scores(attention_scores, q, k).double(), _dot_products(q, k)
        c = _fit_scale(s, reference)
        error = float((s - c * reference).norm() / (c * reference).norm()) if c > 0 else float("inf")
        assert error < 1e-5, (
            f"scores[..., i, j] must be (a multiple of) q_i . k_j, row i of Q dotted with row j of K, "
            f"i.e. Q @ K^T; relative error {error:.2g} for q {tuple(q.shape)}, k {tuple(k.shape)}"
        )


@check(points=1)
def test_scale(attention_scores):
    """scale 1/sqrt(d_k)"""
    for seed, d in [(2301, 16), (2302, 64), (2303, 5)]:
        q, k = _qk(seed, (2,), 3, 7, d)
        c = _fit_scale(_scores(attention_scores, q, k), _dot_products(q, k))
        assert abs(c * math.sqrt(d) - 1) < 1e-4, (
            f"the scores must be q . k divided by sqrt(d_k) = {math.sqrt(d):.4g} (d_k = q.shape[-1] = {d}); "
            f"yours are q . k times {c:.4g} instead of times {1 / math.sqrt(d):.4g}"
        )
