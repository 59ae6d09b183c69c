"""Hidden checks for ps03 `attention_entropy(weights)`, against -sum_j p_j log p_j (with 0 log 0 = 0) in float64
and the closed form log T for uniform weights.

One property per check: the shape (size-1 dims kept), distributions without zeros, distributions with zeros, uniform weights. The
value checks compare the numbers even when the shape is wrong (charged once, by the shape check).
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import largest


def _reference(p: torch.Tensor) -> torch.Tensor:
    p = p.double()
    return -torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(dim=-1)


def _distributions(seed: int, shape: tuple, zeros: float = 0.0) -> torch.Tensor:
    """Random distributions over the last dim, a share `zeros` of the entries exactly 0 (one nonzero per row)."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(*shape, generator=g, dtype=torch.float64)
    if zeros:
        masked = torch.rand(*shape, generator=g) < zeros
        rows = masked.reshape(-1, shape[-1])
        rows[torch.arange(rows.shape[0]), torch.randint(0, shape[-1], (rows.shape[0],), generator=g)] = False
        logits = logits.masked_fill(rows.reshape(shape), float("-inf"))
    return torch.softmax(logits, dim=-1)


def _values(attention_entropy, p: torch.Tensor) -> torch.Tensor:
    h = attention_entropy(p)
    assert isinstance(h, torch.Tensor), f"attention_entropy must return a tensor; got {type(h).__name__}"
    assert h.numel() == p[..., 0].numel(), (
        f"one entropy per distribution: for weights {tuple(p.shape)}, shape {tuple(p.shape[:-1])}; got {tuple(h.shape)}"
    )
    return h.reshape(p.shape[:-1]).double()


def _error(h: torch.Tensor, reference: torch.Tensor) -> float:
    return largest(h - reference)


@check(points=1)
def test_shape(attention_entropy):
    """shape: (..., T) -> (...), one entropy per distribution"""
    for seed, shape in [(3701, (2, 3, 5)), (3702, (4, 7)), (3703, (6,)), (3704, (1, 5)), (3705, (3, 1, 4))]:
        h = attention_entropy(_distributions(seed, shape))
        assert isinstance(h, torch.Tensor), f"attention_entropy must return a tensor; got {type(h).__name__}"
        assert tuple(h.shape) == shape[:-1], (
            f"for weights {shape} the entropies must have shape {shape[:-1]} (sum over the last dim, the keys); "
            f"got {tuple(h.shape)}"
        )


@check(points=1)
def test_no_zeros(attention_entropy):
    """-sum p log p in nats, for weights with no zeros"""
    for seed, shape in [(3801, (3, 4, 6)), (3802, (5, 9))]:
        p = _distributions(seed, shape)
        error = _error(_values(attention_entropy, p), _reference(p))
        assert error < 1e-5, (
            f"the entropy must be -sum_j p_j log p_j over the last dim, in nats (natural log); max error {error:.2g} "
            f"for weights {shape}"
        )


@check(points=1)
def test_zeros(attention_entropy):
    """weights that are exactly 0 count as 0 log 0 = 0 (no nan)"""
    for seed, shape in [(3901, (4, 8)), (3902, (2, 3, 5))]:
        p = _distributions(seed, shape, zeros=0.5)
        h = _values(attention_entropy, p)
        assert not torch.isnan(h).any(), (
            "the entropy is nan for weights with zeros: 0 * log(0) = 0 * (-inf) = nan in floating point; "
            "treat 0 log 0 as 0 (e.g. torch.where(p > 0, ...))"
        )
        error = _error(h, _reference(p))
        assert error < 1e-5, f"with zero weights the entropy of the others is still -sum p log p; max error {error:.2g}"
    one_hot = torch.eye(7, dtype=torch.float64)
    h = _values(attention_entropy, one_hot)
    assert _error(h, torch.zeros(7, dtype=torch.float64)) < 1e-5, (
        f"one-hot weights (all attention on one key) have entropy 0; got {h.tolist()}"
    )


@check(points=1)
def test_uniform(attention_entropy):
    """uniform weights over T keys give log T nats, the maximum"""
    for t in (1, 2, 16, 100):
        h = _values(attention_entropy, torch.full((3, t), 1 / t, dtype=torch.float64))
        error = _error(h, torch.full((3,), math.log(t), dtype=torch.float64))
        assert error < 1e-5, (
            f"uniform weights over T = {t} keys must give log T = {math.log(t):.4f} nats (natural log); "
            f"got {h[0].item():.4f}"
        )
