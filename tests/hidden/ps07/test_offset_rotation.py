"""Hidden checks for ps07 `offset_rotation(k, d)`: the block-diagonal M_k with PE(p + k) = M_k PE(p), checked
against the sinusoidal table built independently (math module, float64) and against orthogonality.

One property per check: shape and orthogonality, the block-diagonal structure, the offset itself.
"""

import math

import torch

from mastering_transformers.grading import check


def _reference_table(t: int, d: int) -> torch.Tensor:
    def entry(p: int, c: int) -> float:
        angle = p / 10000.0 ** (2 * (c // 2) / d)  # pair c // 2 has the frequency 10000^(-2i/d)
        return math.sin(angle) if c % 2 == 0 else math.cos(angle)

    return torch.tensor([[entry(p, c) for c in range(d)] for p in range(t)], dtype=torch.float64)


ISOLATE = {"sinusoidal_table": lambda t, d: _reference_table(t, d).float()}


def _matrix(offset_rotation, k: int, d: int) -> torch.Tensor:
    m = offset_rotation(k, d)
    assert isinstance(m, torch.Tensor), f"offset_rotation must return a tensor; got {type(m).__name__}"
    assert tuple(m.shape) == (d, d), f"offset_rotation({k}, {d}) must have shape (d, d) = ({d}, {d}); got {tuple(m.shape)}"
    return m.double()


@check(points=1)
def test_orthogonal(offset_rotation):
    """shape (d, d) and orthogonal: M M^T = I"""
    for k, d in [(1, 8), (5, 16), (-3, 6)]:
        m = _matrix(offset_rotation, k, d)
        error = float((m @ m.T - torch.eye(d, dtype=torch.float64)).abs().max())
        assert error < 1e-5, (
            f"offset_rotation({k}, {d}) must be a rotation, so M M^T = I; it is off by up to {error:.3g}: "
            "each 2x2 block must be [[cos a, sin a], [-sin a, cos a]] (mind the minus sign)"
        )


@check(points=1)
def test_block_diagonal(offset_rotation):
    """only the 2x2 blocks on the diagonal are non-zero (pair i = columns 2i, 2i+1)"""
    for k, d in [(2, 10), (7, 4)]:
        m = _matrix(offset_rotation, k, d)
        pair = torch.arange(d) // 2
        outside = m[pair[:, None] != pair[None, :]]
        assert float(outside.abs().max()) < 1e-8, (
            f"offset_rotation({k}, {d}) mixes different frequency pairs: entries outside the 2x2 diagonal blocks "
            f"must be 0; the largest is {float(outside.abs().max()):.3g}"
        )


@check(points=1)
def test_shifts_positions(offset_rotation):
    """PE(p + k) = M_k PE(p) for every position p"""
    t = 60
    for k, d in [(1, 16), (3, 8), (11, 32), (0, 6), (-4, 12)]:
        pe = _reference_table(t, d)
        m = _matrix(offset_rotation, k, d)
        src = pe[max(0, -k): t - max(0, k)]
        dst = pe[max(0, k): t - max(0, -k)]
        error = float((src @ m.T - dst).abs().max())
        assert error < 1e-5, (
            f"with k={k}, d={d}, M_k PE(p) differs from PE(p + k) by up to {error:.3g}: the block of pair i "
            "rotates by the angle k * 10000^(-2i/d), as [[cos, sin], [-sin, cos]] acting on (sin, cos)"
        )
