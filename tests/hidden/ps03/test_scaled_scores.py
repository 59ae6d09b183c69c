"""Hidden checks for ps03 `scaled_scores(q, k, scale=None)`, against the dot products q_i . k_j (einsum, float64).

One property per check: the shape, the dot products (up to a factor), the default factor 1/sqrt(d_k) with
leading (batch, head) dimensions, an explicit `scale`, and gradients to q and k.
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow


def _qk(seed: int, lead: tuple, t_q: int, t_k: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, t_q, d, generator=g), torch.randn(*lead, t_k, d, generator=g)


def _dot_products(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.einsum("...id,...jd->...ij", q.double(), k.double())


def _fit_factor(scores: torch.Tensor, reference: torch.Tensor) -> float:
    """The c that makes c * reference closest to scores (least squares)."""
    return float((scores * reference).sum() / (reference * reference).sum())


def _scores(scaled_scores, q, k, **kwargs) -> torch.Tensor:
    s = scaled_scores(q, k, **kwargs)
    assert isinstance(s, torch.Tensor), f"scaled_scores must return a tensor; got {type(s).__name__}"
    expected = (*q.shape[:-1], k.shape[-2])
    assert tuple(s.shape) == expected, (
        f"for q {tuple(q.shape)} and k {tuple(k.shape)} the scores must have shape (..., T_q, T_k) = "
        f"{expected}; got {tuple(s.shape)}"
    )
    assert torch.isfinite(s).all(), f"the scores contain inf or nan for q {tuple(q.shape)}, k {tuple(k.shape)}"
    return s.double()


@check(points=1)
def test_shape(scaled_scores):
    """shape: (..., T_q, D), (..., T_k, D) -> (..., T_q, T_k)"""
    for seed, lead, t_q, t_k, d in [(3101, (2, 3), 5, 7, 4), (3102, (), 6, 3, 9), (3103, (4,), 1, 8, 2),
                                    (3104, (1, 1), 3, 1, 4)]:
        _scores(scaled_scores, *_qk(seed, lead, t_q, t_k, d))


@check(points=1)
def test_dot_products(scaled_scores):
    """entries are (a multiple of) the dot products q_i . k_j"""
    for seed, lead, t_q, t_k, d in [(3201, (3,), 6, 5, 8), (3202, (2, 2), 4, 9, 3)]:
        q, k = _qk(seed, lead, t_q, t_k, d)
        s, reference = _scores(scaled_scores, q, k), _dot_products(q, k)
        c = _fit_factor(s, reference)
        error = float((s - c * reference).norm() / (c * reference).norm()) if c > 0 else float("inf")
        assert error < 1e-5, (
            f"scores[..., i, j] must be a multiple of q_i . k_j, i.e. of Q @ K^T; relative error {error:.2g} for "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}"
        )


@check(points=1)
def test_default_scale(scaled_scores):
    """the default (scale=None) divides by sqrt(d_k), d_k = q.shape[-1]"""
    for seed, lead, d in [(3301, (2, 3), 16), (3302, (2,), 64), (3303, (), 5)]:
        q, k = _qk(seed, lead, 6, 7, d)
        c = _fit_factor(_scores(scaled_scores, q, k), _dot_products(q, k))
        assert abs(c * math.sqrt(d) - 1) < 1e-4, (
            f"by default the scores are q . k divided by sqrt(d_k) = {math.sqrt(d):.4g}, with d_k = q.shape[-1] = {d} "
            f"(q of shape {tuple(q.shape)}); yours are q . k times {c:.4g} instead of times {1 / math.sqrt(d):.4g}"
        )


@check(points=1)
def test_explicit_scale(scaled_scores):
    """a given scale multiplies the dot products (scale=1.0, scale=1/d_k, ...)"""
    for seed, d, scale in [(3401, 16, 1.0), (3402, 64, 1 / 64), (3403, 8, 0.3)]:
        q, k = _qk(seed, (2,), 5, 4, d)
        c = _fit_factor(_scores(scaled_scores, q, k, scale=scale), _dot_products(q, k))
        assert abs(c / scale - 1) < 1e-4, (
            f"with scale={scale:.4g} the scores must be q . k times {scale:.4g} (the scale replaces 1/sqrt(d_k)); "
            f"yours are q . k times {c:.4g}"
        )


@check(points=1)
def test_gradient(scaled_scores):
    """gradients flow to q and k (attention trains through the scores)"""
    g = torch.Generator().manual_seed(3501)
    cases = [(torch.randn(*lead, t_q, d, generator=g, dtype=torch.float64),
              torch.randn(*lead, t_k, d, generator=g, dtype=torch.float64))
             for lead, t_q, t_k, d in [((2,), 4, 5, 3), ((), 3, 3, 8), ((1, 2), 1, 4, 2)]]
    assert_gradients_flow(scaled_scores, cases, wrt=(0, 1), what="scaled_scores", seed=3502)
