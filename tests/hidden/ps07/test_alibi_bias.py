"""Hidden checks for ps07 `alibi_bias(slopes, T)`, against bias[h, i, j] = -slopes[h] * (i - j) written as
explicit loops in float64.

One property per check: the shape, dependence on i - j only, the sign in the past, the whole bias.
"""

import torch

from mastering_transformers.grading import check


def _slopes(seed: int, h: int) -> torch.Tensor:
    return torch.rand(h, generator=torch.Generator().manual_seed(seed)) * 0.9 + 0.05


def _reference(slopes: torch.Tensor, t: int) -> torch.Tensor:
    return torch.tensor([[[-m * (i - j) for j in range(t)] for i in range(t)] for m in slopes.tolist()],
                        dtype=torch.float64)


def _bias(alibi_bias, slopes: torch.Tensor, t: int) -> torch.Tensor:
    b = alibi_bias(slopes, t)
    assert isinstance(b, torch.Tensor), f"alibi_bias must return a tensor; got {type(b).__name__}"
    expected = (len(slopes), t, t)
    assert tuple(b.shape) == expected, f"alibi_bias(slopes of {len(slopes)} heads, {t}) must have shape (H, T, T) = {expected}; got {tuple(b.shape)}"
    return b.double()


@check(points=1)
def test_shape(alibi_bias):
    """shape (H, T, T)"""
    for seed, h, t in [(8101, 3, 5), (8102, 8, 1), (8103, 1, 9)]:
        _bias(alibi_bias, _slopes(seed, h), t)


@check(points=1)
def test_depends_on_distance(alibi_bias):
    """0 on the diagonal and constant along every diagonal (a function of i - j)"""
    b = _bias(alibi_bias, _slopes(8201, 4), 10)
    for offset in range(-9, 10):
        diagonal = b.diagonal(offset, dim1=1, dim2=2)
        spread = float((diagonal.max(-1).values - diagonal.min(-1).values).max())
        assert spread < 1e-5, f"bias[h, i, j] must depend on i - j only; along i - j = {-offset} it varies by {spread:.3g}"
    assert float(b.diagonal(dim1=1, dim2=2).abs().max()) < 1e-6, "a query's bias for its own position (i = j) must be 0"


@check(points=1)
def test_past_is_penalised(alibi_bias):
    """keys in the past (j < i) get a negative bias, more negative farther back"""
    b = _bias(alibi_bias, _slopes(8301, 3), 8)
    i, j = torch.arange(8)[:, None], torch.arange(8)[None, :]
    past = b[:, i > j]
    assert bool((past < 0).all()), (
        "a key j < i in the past must get a negative bias -m (i - j) (a penalty for distance); "
        f"found values up to {float(past.max()):.3g}: check the sign"
    )
    assert bool((b[:, 7, 1:7] > b[:, 7, 0:6]).all()), "farther back must mean more negative: bias[h, i, j] decreases as j moves away from i"


@check(points=1)
def test_matches_reference(alibi_bias):
    """equals -slopes[h] * (i - j) everywhere, future keys included"""
    for seed, h, t in [(8401, 4, 7), (8402, 6, 12)]:
        slopes = _slopes(seed, h)
        error = float((_bias(alibi_bias, slopes, t) - _reference(slopes, t)).abs().max())
        assert error < 1e-5, (
            f"bias[h, i, j] must be -slopes[h] * (i - j) for every i, j (future keys j > i get a positive value, "
            f"which the causal mask removes later); max error {error:.3g}"
        )
