"""Hidden checks for ps07 `alibi_slopes(n_head)`, against the slopes written out from the ALiBi paper's rule
(powers of 2: 2^(-8h/H); otherwise the largest power of 2 below H, then every other slope for twice as many).

One property per check: shape and range, powers of 2, other head counts.
"""

import math

import torch

from mastering_transformers.grading import check


def _geometric(n: int) -> list[float]:
    return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]


def _reference(n: int) -> list[float]:
    low = 2 ** int(math.log2(n))
    return _geometric(low) + _geometric(2 * low)[0::2][: n - low]


def _slopes(alibi_slopes, n: int) -> torch.Tensor:
    s = alibi_slopes(n)
    s = torch.as_tensor(s)
    assert tuple(s.shape) == (n,), f"alibi_slopes({n}) must have shape (n_head,) = ({n},); got {tuple(s.shape)}"
    return s.double()


@check(points=1)
def test_shape_and_range(alibi_slopes):
    """shape (H,), every slope in (0, 1]"""
    for n in (4, 7, 8):
        s = _slopes(alibi_slopes, n)
        assert bool((s > 0).all() and (s <= 1).all()), f"alibi_slopes({n}) must lie in (0, 1]; got {s.tolist()}"


@check(points=1)
def test_powers_of_two(alibi_slopes):
    """power-of-2 head counts: 2^(-8h/H), h = 1 .. H"""
    for n in (1, 2, 8, 16, 32):
        s = _slopes(alibi_slopes, n)
        expected = torch.tensor(_geometric(n), dtype=torch.float64)
        assert torch.allclose(s, expected, rtol=1e-5), (
            f"alibi_slopes({n}) must be 2^(-8h/{n}) for h = 1..{n}, starting at {expected[0]:.4g}; got "
            f"{[round(v, 4) for v in s.tolist()[:4]]}...: h starts at 1, not 0"
        )


@check(points=1)
def test_other_head_counts(alibi_slopes):
    """other head counts: the paper's rule (e.g. 6 heads: 4-head slopes, then 2^-1, 2^-3)"""
    for n in (3, 5, 6, 12, 20):
        s = _slopes(alibi_slopes, n)
        expected = torch.tensor(_reference(n), dtype=torch.float64)
        assert torch.allclose(s, expected, rtol=1e-5), (
            f"alibi_slopes({n}): expected {[round(v, 4) for v in expected.tolist()]}, got "
            f"{[round(v, 4) for v in s.tolist()]}: take the slopes for the largest power of 2 below {n}, then "
            "every other slope (1st, 3rd, ...) of the sequence for twice that many heads"
        )
