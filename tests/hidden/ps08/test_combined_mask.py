"""Hidden checks for ps08 `combined_mask(lengths, T)`, against the closed form
mask[b, 0, i, j] = (j <= i) and (j < lengths[b]).

One property per check: dtype and exact shape (B, 1, T, T); the diagonal of the real queries; causality (future
keys blocked, real past keys allowed); padding keys blocked in every row; the rows of padding queries (i >= length)
keep exactly the real keys. The value checks read any tensor of B * T * T entries as (B, T, T), so a wrong shape
costs only the first check.

While these checks run, the student's `padding_mask` is replaced by the reference in ISOLATE, so a bug in it is
not charged a second time here.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


def _reference_padding_mask(lengths, t):
    return (torch.arange(t)[None, :] < torch.as_tensor(lengths)[:, None])[:, None, None, :]


ISOLATE = {"padding_mask": _reference_padding_mask}


def _lengths(seed: int, b: int, t: int) -> torch.Tensor:
    """Random lengths in [1, T], with one full sequence and one of length 1 when B allows."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    if b >= 2:
        lengths[0], lengths[-1] = t, 1
    return lengths


def _as_btt(combined_mask, lengths: torch.Tensor, t: int) -> torch.Tensor:
    b = lengths.shape[0]
    m = expect_tensor(combined_mask(lengths, t), f"combined_mask(lengths of shape ({b},), {t})")
    assert m.numel() == b * t * t, (
        f"combined_mask(lengths of shape ({b},), {t}) must have one entry per (sequence, query, key), shape "
        f"(B, 1, T, T) = ({b}, 1, {t}, {t}); got {tuple(m.shape)}"
    )
    return m.reshape(b, t, t) != 0


CASES = [(3, 6), (1, 5), (4, 9), (2, 1), (5, 4)]


@check(points=1)
def test_bool_shape(combined_mask):
    """dtype torch.bool and shape (B, 1, T, T), B = 1 and T = 1 included"""
    for seed, (b, t) in enumerate(CASES + [(1, 1)]):
        lengths = _lengths(8300 + seed, b, t)
        m = expect_tensor(combined_mask(lengths, t), f"combined_mask(lengths of shape ({b},), {t})")
        assert m.dtype == torch.bool, f"the mask must be boolean (True = may attend); got dtype {m.dtype}"
        assert tuple(m.shape) == (b, 1, t, t), (
            f"for lengths of shape ({b},) and T = {t} the mask must have shape (B, 1, T, T) = ({b}, 1, {t}, {t}): "
            f"(T, T) causal & (B, 1, 1, T) padding broadcast to it; got {tuple(m.shape)}"
        )


@check(points=1)
def test_diagonal(combined_mask):
    """every real query attends to itself (the diagonal is kept)"""
    for seed, (b, t) in enumerate(CASES):
        lengths = _lengths(8400 + seed, b, t)
        m = _as_btt(combined_mask, lengths, t)
        for i, n in enumerate(lengths.tolist()):
            missing = [q for q in range(n) if not m[i, q, q]]
            assert not missing, (
                f"mask[{i}, 0, q, q] must be True for every real query q < length = {n} (a token attends to itself: "
                f"j <= i, not j < i); it is False at q = {missing[:4]}"
            )


@check(points=1)
def test_causal(combined_mask):
    """future keys blocked, the past of real queries allowed"""
    for seed, (b, t) in enumerate(CASES):
        lengths = _lengths(8500 + seed, b, t)
        m = _as_btt(combined_mask, lengths, t)
        for i, n in enumerate(lengths.tolist()):
            future = [(q, k) for q in range(t) for k in range(q + 1, t) if m[i, q, k]]
            assert not future, (
                f"query i must never see a future key j > i; for sequence {i} (length {n}, T = {t}) the mask allows "
                f"(i, j) = {future[:3]}"
            )
            past = [(q, k) for q in range(n) for k in range(q) if not m[i, q, k]]  # real queries and keys
            assert not past, (
                f"a real query i may attend to every key j < i; for sequence {i} (length {n}, T = {t}) the mask "
                f"blocks (i, j) = {past[:3]} (True means may attend)"
            )


@check(points=1)
def test_padding_keys(combined_mask):
    """padding keys j >= length are blocked in every row"""
    for seed, (b, t) in enumerate(CASES):
        lengths = _lengths(8600 + seed, b, t)
        if b == 1:
            lengths = torch.tensor([max(1, t - 2)])
        m = _as_btt(combined_mask, lengths, t)
        for i, n in enumerate(lengths.tolist()):
            leaks = [(q, k) for q in range(t) for k in range(n, t) if m[i, q, k]]
            assert not leaks, (
                f"sequence {i}, length {n}, T = {t}: no query may attend to a padding key j >= {n}, but the mask "
                f"allows (i, j) = {leaks[:3]}; padding is masked on the keys (the last axis), j < length"
            )


@check(points=1)
def test_padding_queries(combined_mask):
    """padding queries keep exactly the real keys (no empty row)"""
    for seed, (b, t) in enumerate(CASES):
        lengths = _lengths(8700 + seed, b, t)
        if b == 1:
            lengths = torch.tensor([max(1, t - 2)])
        m = _as_btt(combined_mask, lengths, t)
        for i, n in enumerate(lengths.tolist()):
            for q in range(n, t):
                row = [int(k) for k in torch.nonzero(m[i, q]).flatten()]
                assert row == list(range(n)), (
                    f"sequence {i}, length {n}, T = {t}: padding query {q} must keep exactly the real keys "
                    f"0 .. {n - 1}; it allows {row[:6]}. Mask padding as keys (columns), not queries (rows): "
                    f"a row with no key makes the softmax 0/0 = NaN"
                )
