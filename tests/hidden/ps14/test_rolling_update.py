"""Hidden checks for ps14 `rolling_update(k_buf, pos_buf, k_new, pos_new)`: a rolling buffer where the token at
position p lives in slot p mod W, compared with a slot-by-slot reference written here."""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


def _reference(k_buf, pos_buf, k_new, pos_new):
    k, pos = k_buf.clone(), pos_buf.clone()
    w = k.shape[0]
    for i in range(len(pos_new)):
        slot = int(pos_new[i]) % w
        k[slot], pos[slot] = k_new[i], pos_new[i]
    return k, pos


def _buffer(seed, w, d, filled_until):
    """A buffer that has seen positions 0 .. filled_until - 1 (fewer than W: the rest of the slots are empty)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(w, d, generator=g)
    pos = torch.full((w,), -1, dtype=torch.long)
    for p in range(max(0, filled_until - w), filled_until):
        pos[p % w] = p
    k[pos < 0] = 0.0
    return k, pos, g


def _check(rolling_update, k_buf, pos_buf, k_new, pos_new, what):
    result = rolling_update(k_buf, pos_buf, k_new, pos_new)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"rolling_update must return a tuple (k_buf_new, pos_buf_new); got {type(result).__name__}"
    )
    k, pos = result
    expect_tensor(k, "k_buf_new", tuple(k_buf.shape))
    expect_tensor(pos, "pos_buf_new", tuple(pos_buf.shape))
    assert pos.dtype == torch.int64, f"pos_buf_new must stay int64; got {pos.dtype}"
    k_ref, pos_ref = _reference(k_buf, pos_buf, k_new, pos_new)
    assert pos.tolist() == pos_ref.tolist(), (
        f"{what}: buffer positions {pos_buf.tolist()} after writing positions {pos_new.tolist()} into W="
        f"{len(pos_buf)} slots must be {pos_ref.tolist()} (slot = position mod W); got {pos.tolist()}"
    )
    assert torch.equal(k, k_ref), f"{what}: every key must be in the slot of its position, the other slots untouched"


@check(points=1)
def test_single_token(rolling_update):
    """one token goes to slot p mod W, the other slots are untouched"""
    for seed, w, d, seen in [(1421, 4, 3, 4), (1422, 5, 2, 13), (1423, 1, 4, 7), (1424, 6, 1, 2)]:
        k_buf, pos_buf, g = _buffer(seed, w, d, seen)
        _check(rolling_update, k_buf, pos_buf, torch.randn(1, d, generator=g), torch.tensor([seen]),
               f"one token at position {seen}")


@check(points=1)
def test_wrapping_chunk(rolling_update):
    """a chunk of T <= W tokens that wraps around the end of the buffer"""
    for seed, w, d, seen, t in [(1431, 5, 3, 7, 4), (1432, 8, 2, 6, 8), (1433, 3, 4, 2, 2), (1434, 4, 2, 0, 3)]:
        k_buf, pos_buf, g = _buffer(seed, w, d, seen)
        _check(rolling_update, k_buf, pos_buf, torch.randn(t, d, generator=g), torch.arange(seen, seen + t),
               f"{t} tokens at positions {seen}..{seen + t - 1}")


@check(points=1)
def test_chunk_longer_than_window(rolling_update):
    """a chunk longer than the window keeps only its last W tokens"""
    for seed, w, d, seen, t in [(1441, 3, 2, 0, 7), (1442, 4, 3, 5, 9), (1443, 2, 1, 3, 5), (1444, 1, 2, 4, 3)]:
        k_buf, pos_buf, g = _buffer(seed, w, d, seen)
        _check(rolling_update, k_buf, pos_buf, torch.randn(t, d, generator=g), torch.arange(seen, seen + t),
               f"{t} tokens at positions {seen}..{seen + t - 1} (more than W={w})")
