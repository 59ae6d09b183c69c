"""Hidden checks for ps08 `padding_mask(lengths, T)`, against the closed form mask[b, 0, 0, j] = (j < lengths[b]).

One property per check: dtype and exact shape (B, 1, 1, T); True on every real token (the last one included);
False on every padding position (the first one included). The value checks read any tensor of B * T entries as
(B, T), so a wrong shape costs only the first check.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


def _lengths(seed: int, b: int, t: int, full: bool = False) -> torch.Tensor:
    """Random lengths in [1, T], with one full sequence (T) and one of length 1 when B allows."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    if b >= 2:
        lengths[0], lengths[-1] = t, 1
    return torch.full((b,), t) if full else lengths


def _as_bt(padding_mask, lengths: torch.Tensor, t: int) -> torch.Tensor:
    b = lengths.shape[0]
    m = expect_tensor(padding_mask(lengths, t), f"padding_mask(lengths of shape ({b},), {t})")
    assert m.numel() == b * t, (
        f"padding_mask(lengths of shape ({b},), {t}) must have one entry per (sequence, key), shape (B, 1, 1, T) = "
        f"({b}, 1, 1, {t}); got {tuple(m.shape)}"
    )
    return m.reshape(b, t) != 0


@check(points=1)
def test_bool_shape(padding_mask):
    """dtype torch.bool and shape (B, 1, 1, T), B = 1 and T = 1 included"""
    for seed, (b, t) in enumerate([(3, 7), (1, 5), (4, 1), (1, 1), (6, 12)]):
        for dtype in (torch.int64, torch.int32):
            lengths = _lengths(8000 + seed, b, t).to(dtype)
            m = padding_mask(lengths, t)
            expect_tensor(m, f"padding_mask(lengths of shape ({b},), T={t})")
            assert m.dtype == torch.bool, f"the mask must be boolean (True = may attend); got dtype {m.dtype}"
            assert tuple(m.shape) == (b, 1, 1, t), (
                f"for lengths of shape ({b},) and T = {t} the mask must have shape (B, 1, 1, T) = ({b}, 1, 1, {t}), "
                f"the size-1 dims broadcasting over heads and queries; got {tuple(m.shape)}"
            )


@check(points=1)
def test_real_tokens(padding_mask):
    """True on every real token j < length, the last one included"""
    for seed, (b, t, full) in enumerate([(4, 9, False), (1, 6, True), (5, 3, False), (2, 1, True)]):
        lengths = _lengths(8100 + seed, b, t, full)
        m = _as_bt(padding_mask, lengths, t)
        for i, n in enumerate(lengths.tolist()):
            blocked = [j for j in range(n) if not m[i, j]]
            assert not blocked, (
                f"sequence {i} has length {n} (real tokens at 0 .. {n - 1}, T = {t}) but the mask blocks the real "
                f"key(s) {blocked[:4]}: the entry for key j must be True when j < length"
            )


@check(points=1)
def test_padding_blocked(padding_mask):
    """False on every padding position j >= length, the first one included"""
    for seed, (b, t) in enumerate([(4, 9), (3, 5), (1, 8), (6, 4)]):
        lengths = _lengths(8200 + seed, b, t)
        if b == 1:
            lengths = torch.tensor([3])
        m = _as_bt(padding_mask, lengths, t)
        for i, n in enumerate(lengths.tolist()):
            allowed = [j for j in range(n, t) if m[i, j]]
            assert not allowed, (
                f"sequence {i} has length {n} (padding at {n} .. {t - 1}, T = {t}) but the mask allows the padding "
                f"key(s) {allowed[:4]}: the entry for key j must be False when j >= length (j < length, not <=)"
            )
