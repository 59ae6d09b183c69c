"""Hidden checks for ps07 `sinusoidal_table(T, d)`, against Vaswani et al.'s formula evaluated one entry at a
time with Python's math module, in float64.

One property per check: the shape, position 0, every (sin, cos) pair on the unit circle, the frequencies.
"""

import math

import torch

from mastering_transformers.grading import check


def _reference(t: int, d: int) -> torch.Tensor:
    def entry(p: int, c: int) -> float:
        angle = p / 10000.0 ** (2 * (c // 2) / d)  # pair c // 2 has the frequency 10000^(-2i/d)
        return math.sin(angle) if c % 2 == 0 else math.cos(angle)

    return torch.tensor([[entry(p, c) for c in range(d)] for p in range(t)], dtype=torch.float64)


def _table(sinusoidal_table, t: int, d: int) -> torch.Tensor:
    pe = sinusoidal_table(t, d)
    assert isinstance(pe, torch.Tensor), f"sinusoidal_table must return a tensor; got {type(pe).__name__}"
    assert tuple(pe.shape) == (t, d), f"sinusoidal_table({t}, {d}) must have shape (T, d) = ({t}, {d}); got {tuple(pe.shape)}"
    assert pe.is_floating_point(), f"the table must hold floating-point numbers; got dtype {pe.dtype}"
    return pe.double()


@check(points=1)
def test_shape(sinusoidal_table):
    """shape (T, d), floating point"""
    for t, d in [(7, 10), (1, 2), (33, 64)]:
        _table(sinusoidal_table, t, d)


@check(points=1)
def test_position_zero(sinusoidal_table):
    """position 0 is [0, 1, 0, 1, ...] (positions start at 0, sin in even and cos in odd columns)"""
    for t, d in [(5, 12), (9, 6)]:
        row = _table(sinusoidal_table, t, d)[0]
        expected = torch.tensor([0.0, 1.0] * (d // 2), dtype=torch.float64)
        assert torch.allclose(row, expected, atol=1e-6), (
            f"row 0 (position 0, every angle 0) must be [sin 0, cos 0, ...] = [0, 1, 0, 1, ...]; got "
            f"{[round(v, 3) for v in row[:6].tolist()]}...: positions start at 0, sines go in the even columns "
            "(0, 2, ...) and cosines in the odd ones, interleaved"
        )


@check(points=1)
def test_pairs_on_unit_circle(sinusoidal_table):
    """columns 2i and 2i+1 are the sin and cos of the same angle (interleaved pairs)"""
    for t, d in [(20, 16), (11, 8)]:
        pe = _table(sinusoidal_table, t, d)
        radius = pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2
        bad = (radius - 1).abs().amax(dim=0)
        assert torch.all(bad < 1e-5), (
            f"for every pair i, PE[p, 2i]^2 + PE[p, 2i+1]^2 must be 1 (sin and cos of the same angle p * omega_i); "
            f"with d={d} it is not for the pairs i = {torch.nonzero(bad >= 1e-5).flatten().tolist()}: interleave "
            "the columns (pe[:, 0::2] = sin, pe[:, 1::2] = cos) rather than concatenating them"
        )


@check(points=1)
def test_frequencies(sinusoidal_table):
    """matches the formula: omega_i = 10000^(-2i/d)"""
    for t, d in [(50, 32), (13, 6), (40, 128)]:
        pe = _table(sinusoidal_table, t, d)
        error = (pe - _reference(t, d)).abs()
        assert float(error.max()) < 1e-4, (
            f"sinusoidal_table({t}, {d}) differs from sin/cos(p * 10000^(-2i/d)) by up to {float(error.max()):.3g}, "
            f"first in column {int(error.amax(dim=0).argmax())}: check the frequency of each pair (the exponent is "
            "2i/d, with i the pair index, not the column index)"
        )
