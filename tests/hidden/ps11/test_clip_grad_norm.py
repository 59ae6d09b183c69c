"""Hidden checks for ps11 `clip_grad_norm(grads, max_norm) -> (clipped, total_norm)`, against
`torch.nn.utils.clip_grad_norm_` applied here to parameters holding copies of the same gradients (and the global norm
sqrt(sum of squares) in float64).

One property per check: the global norm before clipping, as a Python float; above max_norm every gradient is scaled
by the same factor max_norm / (norm + 1e-6); at or below max_norm nothing changes; None entries are skipped (not
counted, not crashing) and come back as None in their places, and a list with no gradient at all has norm 0. The
proxy fails any call that changes an input gradient in place.
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest

SHAPES = [(4, 3), (5,), (1,), (), (2, 1, 3), (1, 1), (7, 2)]


def _grads(seed: int, n: int, dtype=torch.float64, none_at=()) -> list:
    """n gradients of random shapes (size-1 and 0-dim included) and sizes, None at the given positions."""
    g = torch.Generator().manual_seed(seed)
    grads = []
    for i in range(n):
        shape = SHAPES[int(torch.randint(0, len(SHAPES), (), generator=g))]
        scale = float(torch.rand((), generator=g)) * 3 + 0.1
        grads.append(None if i in none_at else (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype))
    return grads


def _norm(grads) -> float:
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))


def _torch_clip(grads, max_norm):
    """clip_grad_norm_ on parameters whose .grad are copies of grads: (clipped grads, None kept; the norm)."""
    params = []
    for grad in grads:
        p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64) if grad is None else torch.zeros_like(grad))
        p.grad = None if grad is None else grad.clone()
        params.append(p)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], float(total)


def _clip(clip_grad_norm, grads, max_norm):
    """The student's (clipped, total), with the structure checked (not the type of total)."""
    result = clip_grad_norm(grads, max_norm)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"clip_grad_norm must return a pair (clipped_grads, total_norm); got {type(result).__name__}"
    )
    clipped, total = result
    assert isinstance(clipped, (list, tuple)) and len(clipped) == len(grads), (
        f"the clipped gradients must be a list as long as grads ({len(grads)}), one entry per parameter; got "
        f"{type(clipped).__name__}" + (f" of length {len(clipped)}" if isinstance(clipped, (list, tuple)) else "")
    )
    return list(clipped), total


def _as_float(total) -> float:
    try:
        return float(total)
    except (TypeError, ValueError):
        raise AssertionError(f"total_norm must be a number; got {type(total).__name__}") from None


def _error(clipped, reference, where: str) -> float:
    """Largest error of the clipped gradients relative to the largest reference entry; None where None."""
    error = 0.0
    for i, (c, r) in enumerate(zip(clipped, reference)):
        if r is None:
            assert c is None, f"{where}: entry {i} of grads is None (no gradient) and must come back as None"
            continue
        expect_tensor(c, f"{where}: clipped gradient {i}", tuple(r.shape))
        assert c.dtype == r.dtype, f"{where}: clipped gradient {i} must keep its dtype {r.dtype}; got {c.dtype}"
        error = max(error, largest(c.double() - r.double()))
    return error / max(largest(r) for r in reference if r is not None)


@check(points=1)
def test_total_norm(clip_grad_norm):
    """returns the global L2 norm before clipping, as a Python float"""
    cases = [(3, torch.float64, 0.3), (5, torch.float64, 2.0), (1, torch.float64, 0.5), (4, torch.float32, 0.2),
             (6, torch.float64, 50.0)]
    for seed, (n, dtype, factor) in enumerate(cases):
        grads = _grads(12300 + seed, n, dtype)
        norm = _norm(grads)
        max_norm = factor * norm
        _, total = _clip(clip_grad_norm, grads, max_norm)
        assert type(total) is float, (
            f"total_norm must be a Python float (e.g. math.sqrt(...) or float(tensor)); got {type(total).__name__}"
        )
        tolerance = 1e-10 if dtype == torch.float64 else 1e-6
        assert abs(total - norm) <= tolerance * norm, (
            f"for {n} gradients with shapes {[tuple(g.shape) for g in grads]} and max_norm={max_norm:.4g}, total_norm "
            f"must be the norm of all of them together *before* clipping, sqrt(sum over tensors of (g**2).sum()) = "
            f"{norm:.6g}; got {total:.6g}"
        )


@check(points=1)
def test_clips_globally(clip_grad_norm):
    """above max_norm: all gradients scaled by one factor, max_norm / (norm + 1e-6), like clip_grad_norm_"""
    cases = [(4, torch.float64, 0.5), (6, torch.float64, 0.05), (2, torch.float32, 0.3), (1, torch.float64, 0.9),
             (5, torch.float64, 1e-3)]
    for seed, (n, dtype, factor) in enumerate(cases):
        grads = _grads(12400 + seed, n, dtype)
        if n > 1:  # one gradient much larger than the others: per-tensor clipping would differ a lot
            grads[0] = grads[0] * 20
        max_norm = factor * _norm(grads)
        clipped, _ = _clip(clip_grad_norm, grads, max_norm)
        reference, _ = _torch_clip(grads, max_norm)
        where = f"{n} gradients of global norm {_norm(grads):.4g}, max_norm={max_norm:.4g}"
        error = _error(clipped, reference, where)
        tolerance = 1e-10 if dtype == torch.float64 else 1e-6
        assert error < tolerance, (
            f"{where}: every gradient must be multiplied by the same factor max_norm / (global norm + 1e-6), so the "
            f"norm of all of them together becomes max_norm (not each tensor clipped by its own norm); relative "
            f"error {error:.2g}"
        )


@check(points=1)
def test_below_max_unchanged(clip_grad_norm):
    """at or below max_norm the gradients are returned unchanged"""
    cases = [(3, torch.float64, 1.5), (5, torch.float64, 1.01), (2, torch.float32, 100.0), (4, torch.float64, 1e6)]
    for seed, (n, dtype, factor) in enumerate(cases):
        grads = _grads(12500 + seed, n, dtype)
        max_norm = factor * _norm(grads)
        clipped, _ = _clip(clip_grad_norm, grads, max_norm)
        where = f"{n} gradients of global norm {_norm(grads):.4g}, max_norm={max_norm:.4g}"
        error = _error(clipped, grads, where)
        assert error < 1e-12, (
            f"{where}: the norm is already below max_norm, so the gradients must come back unchanged (clip only when "
            f"the norm exceeds max_norm; never scale up); relative change {error:.2g}"
        )
    zeros = [torch.zeros(3, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)]
    clipped, _ = _clip(clip_grad_norm, zeros, 1.0)
    assert all(isinstance(c, torch.Tensor) and c.shape == z.shape and not bool(c.abs().gt(0).any() | c.isnan().any())
               for c, z in zip(clipped, zeros)), "gradients that are all zero (norm 0) must come back as zeros, no nan"


@check(points=1)
def test_none_entries(clip_grad_norm):
    """None entries are skipped and come back as None; no gradient at all gives norm 0"""
    # One gradient among the Nones, above max_norm: clipped by its own norm, whatever else the code gets wrong.
    cases = [(12600, 3, (0, 2), 0.4), (12601, 2, (1,), 0.1), (12602, 4, (0, 1, 3), 0.7), (12603, 1, (), 0.5)]
    for seed, n, none_at, factor in cases:
        grads = _grads(seed, n, torch.float64, none_at)
        norm = _norm(grads)
        max_norm = factor * norm
        where = f"grads with None at positions {list(none_at)} of {n}, max_norm={max_norm:.4g}"
        clipped, total = _clip(clip_grad_norm, grads, max_norm)
        reference, _ = _torch_clip(grads, max_norm)
        error = _error(clipped, reference, where)
        assert error < 1e-10, (
            f"{where}: the gradients that exist must be clipped as clip_grad_norm_ does, by their global norm "
            f"{norm:.6g}; relative error {error:.2g}"
        )
        total = _as_float(total)
        assert abs(total - norm) <= 1e-10 * norm, (
            f"{where}: total_norm must be the norm of the gradients that exist, {norm:.6g} (a None counts as nothing); "
            f"got {total:.6g}"
        )
    for grads in ([None], [None, None, None]):
        clipped, total = _clip(clip_grad_norm, grads, 1.0)
        assert all(c is None for c in clipped), f"with grads = {grads} every entry must come back as None"
        assert _as_float(total) == 0.0, f"with grads = {grads} (no gradient at all) total_norm must be 0.0; got {total}"
