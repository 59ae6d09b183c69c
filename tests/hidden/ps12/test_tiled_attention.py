"""Hidden checks for ps12 `tiled_attention(q, k, v, causal=False, block_q=16, block_k=16) -> (out, lse)`, against
`torch.nn.functional.scaled_dot_product_attention` (output) and `torch.logsumexp` of the scaled, masked scores
(lse), in float64 unless stated.

While these checks run, the student's `attention_tile` is replaced by the reference in ISOLATE, so a bug in it is
not charged a second time here.

One property per check: the non-causal output with the default arguments and block-multiple lengths (exact shapes
and dtype, leading dims); lengths that are not multiples of the block sizes and T_q != T_k; the causal output; the
log-sum-exp; causal tiles above the diagonal skipped (their keys and values are never read).
"""

import math

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _reference_tile(m, l, acc, scores, v):
    m_new = torch.maximum(m, scores.amax(dim=-1))
    shift = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    alpha = torch.exp(m - shift)
    p = torch.exp(scores - shift[..., None])
    return m_new, alpha * l + p.sum(dim=-1), alpha[..., None] * acc + p @ v


ISOLATE = {"attention_tile": _reference_tile}


def _qkv(seed, lead, t_q, t_k, d, dv, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, t_q, d, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(*lead, t_k, d, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(*lead, t_k, dv, generator=g, dtype=torch.float64).to(dtype)
    return q, k, v


def _call(fn, q, k, v, **kwargs):
    result = fn(q, k, v, **kwargs)
    assert isinstance(result, tuple) and len(result) == 2, (
        f"tiled_attention must return a tuple (out, lse); got {type(result).__name__}"
    )
    out = expect_tensor(result[0], "out", (*q.shape[:-1], v.shape[-1]))
    lse = expect_tensor(result[1], "lse", q.shape[:-1])
    return out, lse


def _lse(q, k, causal):
    s = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        t_q, t_k = s.shape[-2:]
        s = s.masked_fill(torch.ones(t_q, t_k, dtype=torch.bool).triu(1), float("-inf"))
    return torch.logsumexp(s, dim=-1)


@check(points=1)
def test_non_causal(tiled_attention):
    """non-causal output with the default arguments: softmax(Q K^T / sqrt(d)) V, shape and dtype kept"""
    for seed, lead, t_q, t_k, d, dv, dtype in [(12301, (2,), 32, 48, 8, 8, torch.float64),
                                               (12302, (1, 3), 16, 32, 4, 6, torch.float32)]:
        q, k, v = _qkv(seed, lead, t_q, t_k, d, dv, dtype)
        out, _ = _call(tiled_attention, q, k, v)
        assert out.dtype == dtype, f"out must keep the inputs' dtype {dtype}; got {out.dtype}"
        expected = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
        error = largest(out.double() - expected)
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        assert error < tol, (
            f"tiled_attention(q, k, v) with the default blocks (16) must equal softmax(Q K^T / sqrt(d)) V for T_q = "
            f"{t_q}, T_k = {t_k}; off by {error:.2g}: divide acc by l once every key tile has been folded in"
        )


@check(points=1)
def test_ragged_lengths(tiled_attention):
    """lengths that are not multiples of the block sizes, T_q != T_k, any block sizes"""
    for seed, t_q, t_k, bq, bk in [(12311, 21, 35, 8, 6), (12312, 7, 3, 4, 2), (12313, 30, 17, 7, 16),
                                   (12314, 5, 9, 16, 16), (12315, 1, 13, 1, 5)]:
        q, k, v = _qkv(seed, (2,), t_q, t_k, 4, 3)
        out, _ = _call(tiled_attention, q, k, v, block_q=bq, block_k=bk)
        error = largest(out - F.scaled_dot_product_attention(q, k, v))
        assert error < 1e-10, (
            f"with T_q = {t_q}, T_k = {t_k}, block_q = {bq}, block_k = {bk} the output is off by {error:.2g}: the "
            "last tiles are shorter; loop over range(0, T, block) and slice [start:start + block] (slicing stops at "
            "the end by itself)"
        )


@check(points=1)
def test_causal(tiled_attention):
    """causal output: query i attends to keys j <= i (aligned at the top left)"""
    for seed, t_q, t_k, bq, bk in [(12321, 32, 32, 8, 8), (12322, 29, 29, 8, 6), (12323, 20, 20, 6, 9),
                                   (12324, 12, 20, 4, 4)]:
        q, k, v = _qkv(seed, (1, 2), t_q, t_k, 8, 4)
        out, _ = _call(tiled_attention, q, k, v, causal=True, block_q=bq, block_k=bk)
        error = largest(out - F.scaled_dot_product_attention(q, k, v, is_causal=True))
        assert error < 1e-10, (
            f"causal output off by {error:.2g} (T_q = {t_q}, T_k = {t_k}, block_q = {bq}, block_k = {bk}): inside a "
            "computed tile set the scores of keys j > i to -inf; skip a tile only when its first key comes after "
            "its last query"
        )


@check(points=1)
def test_lse(tiled_attention):
    """lse = log sum_j exp(s_ij) of the scaled (masked) scores, = m + log l"""
    for seed, t_q, t_k, bq, bk, causal in [(12331, 19, 27, 8, 8, False), (12332, 24, 24, 5, 7, True),
                                           (12333, 3, 40, 2, 16, False)]:
        q, k, v = _qkv(seed, (2,), t_q, t_k, 4, 4)
        q = 3 * q  # scores large enough that lse is far from log(l)
        _, lse = _call(tiled_attention, q, k, v, causal=causal, block_q=bq, block_k=bk)
        error = largest(lse.double() - _lse(q, k, causal))
        assert error < 1e-10, (
            f"lse must be the log-sum-exp of each row's scaled scores (causal={causal}); off by {error:.2g}: it is "
            "m + log(l) with the final m and l"
        )


@check(points=1)
def test_skips_tiles_above_diagonal(tiled_attention):
    """causal: tiles whose first key comes after their last query are not computed"""
    for seed, t_q, t_k, bq, bk in [(12341, 16, 32, 8, 8), (12342, 12, 24, 4, 6)]:
        q, k, v = _qkv(seed, (2,), t_q, t_k, 4, 3)
        k[..., t_q:, :] = float("nan")  # keys no query may see, in tiles entirely above the diagonal
        v[..., t_q:, :] = float("nan")
        out, _ = _call(tiled_attention, q, k, v, causal=True, block_q=bq, block_k=bk)
        reference = F.scaled_dot_product_attention(q, k[..., :t_q, :], v[..., :t_q, :], is_causal=True)
        assert not torch.isnan(out).any(), (
            f"with causal=True (T_q = {t_q}, T_k = {t_k}, block_q = {bq}, block_k = {bk}) the keys after the last "
            "query lie in tiles entirely above the diagonal: those tiles must be skipped, not computed and masked "
            "(we filled their keys and values with nan, and nan reached your output)"
        )
        error = largest(out - reference)
        assert error < 1e-10, f"causal output off by {error:.2g} when the tiles above the diagonal are skipped"
