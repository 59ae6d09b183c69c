"""Flash attention as a Triton kernel, forward and backward (chapter 12).

Chapter 12 derives flash attention in plain PyTorch (``mt.flash``): exact attention computed tile by tile, with
an online softmax, so that the (T_q, T_k) score matrix never exists in memory. This module is the same algorithm
written as GPU kernels in Triton, organised the way FlashAttention-2 (Dao, 2023) organises the work:

* **forward** (``_attn_fwd``): one program per block of ``BLOCK_M`` queries of one (batch, head). It keeps its
  queries on chip and streams blocks of ``BLOCK_N`` keys and values past them, holding a running maximum
  ``m``, a running sum ``l`` and an *un-normalised* output ``acc``; it divides by ``l`` once, at the end, and
  saves only the log-sum-exp ``lse = m + log l`` of every row for the backward pass;
* **backward**: ``_bwd_delta`` computes ``delta = rowsum(dO * O)`` (the softmax backward needs it, and it is
  cheaper than a row of P); ``_attn_bwd_dkdv`` runs one program per block of keys and loops over the queries to
  accumulate dK and dV; ``_attn_bwd_dq`` runs one program per block of queries and loops over the keys to
  accumulate dQ. Each program owns the rows it writes, so no atomic additions are needed. Both recompute the
  probabilities of a tile from the saved lse: ``P = exp(S - lse)``.

With ``causal=True`` the key blocks entirely above the diagonal are never visited; the blocks on the diagonal
are the only ones that apply the mask (and the ragged last block when T is not a multiple of the block size),
so the full blocks run without any masking arithmetic.
Scores are computed in base 2 (``exp2`` with the scale multiplied by log2 e), which is what GPUs do fastest.

Of FlashAttention-2 it has: parallelism over blocks of the sequence (not only over batch and heads) in all three
kernels; the softmax's division deferred to the end; only the lse saved; causal blocks skipped and the mask
confined to the diagonal; the longest causal programs launched first. It trades FlashAttention-2's atomic dQ
updates for a separate dQ kernel that recomputes the scores. It lacks FlashAttention-3's Hopper-specific work
(warp specialisation with asynchronous TMA copies, overlapping softmax with matmuls, FP8), dropout, masks other
than causal, grouped-query K/V heads, variable-length batches and the split-KV scheme used for decoding.

Shapes: q (B, H, T_q, D), k (B, H, T_k, D), v (B, H, T_k, D) -> out (B, H, T_q, D). ``causal=True`` needs
T_q = T_k (top-left aligned, like ``F.scaled_dot_product_attention(is_causal=True)``). D up to 256; a head size
that is not a power of two of at least 16 is zero-padded to one (zeros change neither scores nor outputs).
float16 and bfloat16 inputs use the tensor cores and accumulate in float32; float32 inputs are computed in full
float32 (no TF32); float64 runs under the interpreter only (for checking against finite differences).

Running it
----------
* On an NVIDIA GPU (CUDA tensors), the kernels are compiled; the block sizes, warps and pipeline stages are
  autotuned over a short list suited to Hopper (H100/H200) the first time a (length, head size, causal, dtype)
  combination is seen.
* On a CPU, Triton's interpreter runs the same kernels with NumPy, slowly (small sizes only), with small blocks.
  It must be switched on **before triton is first imported** in the process: ``@triton.jit`` reads the variable
  when a kernel is defined, both for this module's kernels and for triton's own helpers (``tl.max`` ...), which
  are defined when triton is imported; keep it set afterwards (triton imports more of itself lazily)::

      import os
      os.environ["TRITON_INTERPRET"] = "1"   # first, before torch.compile or anything else imports triton
      from mastering_transformers.flash_triton import flash_attention

  Importing this module with the variable set after triton was imported raises an ImportError that says so;
  calling ``flash_attention`` on CPU tensors without the interpreter raises a RuntimeError that says how.

This module imports triton; the package itself does not (``mt.attention`` imports this module only when its
``"triton"`` backend is first called).
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

__all__ = ["INTERPRETED", "FlashAttentionTriton", "flash_attention", "flash_attention_forward"]

LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * log2 e)
MAX_HEAD_DIM = 256


# ---------------------------------------------------------------------------------------------------
# Kernels. Every tensor is contiguous (B, H, T, HEAD_DIM), so row t of head bh starts at (bh * T + t) * HEAD_DIM.
# ---------------------------------------------------------------------------------------------------


# Read the same switch @triton.jit reads (TRITON_INTERPRET) to know, inside the kernels, whether they are interpreted.
_INTERPRETING = tl.constexpr(bool(triton.knobs.runtime.interpret))


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    """a @ b, accumulated in float32 (float64 for float64 tiles).

    NumPy has no bfloat16, so the interpreter keeps bfloat16 tiles as raw 16-bit integers and its matmul would
    multiply those integers: under the interpreter only, bfloat16 tiles are widened to float32 first (exactly).
    """
    if _INTERPRETING:
        if a.dtype.is_bf16():
            a = a.to(tl.float32)
            b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _load_tile(base, rows, n_rows, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr):
    """The (len(rows), HEAD_DIM) tile of rows ``rows``; rows >= n_rows read as 0 when MASKED (ragged last block)."""
    ptrs = base + rows[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :]
    if MASKED:
        tile = tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
    else:
        tile = tl.load(ptrs)
    return tile


@triton.jit
def _load_row_stats(base, rows, n_rows, MASKED: tl.constexpr):
    """One number per row (lse or delta), (len(rows),); rows >= n_rows read as 0 when MASKED."""
    if MASKED:
        x = tl.load(base + rows, mask=rows < n_rows, other=0.0)
    else:
        x = tl.load(base + rows)
    return x


@triton.jit
def _keep(rows, cols, n_cols, CAUSAL: tl.constexpr):
    """(len(rows), len(cols)) bool: query row i may see key col j (j in range; j <= i when causal).

    Query rows past the end are not masked: they always see key 0 (so their softmax has no 0/0), they are never
    stored, and in the backward pass their dO and delta read as 0, so they contribute nothing.
    """
    keep = cols[None, :] < n_cols
    if CAUSAL:
        keep = keep & (cols[None, :] <= rows[:, None])
    return keep


@triton.jit
def _fwd_inner(acc, m_i, l_i, q, k_base, v_base, rows, lo, hi, t_q, t_k, qk_scale,
               HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
               PRECISION: tl.constexpr):
    """Fold the key blocks starting at lo, lo + BLOCK_N, ... < hi into one query block's running state.

    acc (BLOCK_M, HEAD_DIM): sum of 2^(s - m_i) v, not yet divided by l_i; m_i (BLOCK_M,): running row maximum
    of the base-2 scores s; l_i (BLOCK_M,): running sum of 2^(s - m_i). MASKED blocks check bounds and causality.
    """
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_tile(k_base, cols, t_k, HEAD_DIM, MASKED)
        v = _load_tile(v_base, cols, t_k, HEAD_DIM, MASKED)
        qk = _dot(q, tl.trans(k), PRECISION)  # (BLOCK_M, BLOCK_N) dot products; the scores are qk * qk_scale
        if MASKED:
            qk = tl.where(_keep(rows, cols, t_k, CAUSAL), qk, float("-inf"))
        # The maximum is taken before scaling (the scale is positive), so that scaling and subtracting the
        # maximum below are one fused multiply-add per score: the elementwise work is what limits a fast GPU.
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        # The old sum and output were measured against the old maximum: shrink them to the new one.
        # (m_i is -inf only before the first block, which always has a key every row may see: alpha = 0 then.)
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PRECISION)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _attn_fwd(Q, K, V, O, LSE, t_q, t_k, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
              ACC: tl.constexpr, PRECISION: tl.constexpr):
    """Forward pass. Grid (cdiv(T_q, BLOCK_M), B * H): one program per block of queries of one head.

    Writes O (B, H, T_q, HEAD_DIM) and LSE (B * H, T_q), the base-2 log-sum-exp of every row's scores.
    """
    tl.static_assert(BLOCK_M % BLOCK_N == 0)  # the diagonal is covered by whole key blocks
    block = tl.program_id(0)
    if CAUSAL:  # late query blocks see the most keys: launch them first so that no long program runs alone at the end
        block = tl.num_programs(0) - 1 - block
    bh = tl.program_id(1).to(tl.int64)
    q_base, o_base = Q + bh * t_q * HEAD_DIM, O + bh * t_q * HEAD_DIM
    k_base, v_base = K + bh * t_k * HEAD_DIM, V + bh * t_k * HEAD_DIM
    rows = block * BLOCK_M + tl.arange(0, BLOCK_M)

    q = _load_tile(q_base, rows, t_q, HEAD_DIM, True)  # stays on chip for the whole loop
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=ACC)
    l_i = tl.zeros([BLOCK_M], dtype=ACC)
    if CAUSAL:
        # Keys left of this block's first query are visible to every row: no mask. The BLOCK_M keys on the
        # diagonal need the mask. Keys right of the block are never loaded.
        diag = block * BLOCK_M
        acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, k_base, v_base, rows, 0, diag, t_q, t_k, qk_scale,
                                   HEAD_DIM, BLOCK_N, False, CAUSAL, PRECISION)
        acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, k_base, v_base, rows, diag, tl.minimum(diag + BLOCK_M, t_k),
                                   t_q, t_k, qk_scale, HEAD_DIM, BLOCK_N, True, CAUSAL, PRECISION)
    else:
        full = t_k // BLOCK_N * BLOCK_N  # whole key blocks, then the ragged rest (if any) with the bounds mask
        acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, k_base, v_base, rows, 0, full, t_q, t_k, qk_scale,
                                   HEAD_DIM, BLOCK_N, False, CAUSAL, PRECISION)
        acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, k_base, v_base, rows, full, t_k, t_q, t_k, qk_scale,
                                   HEAD_DIM, BLOCK_N, True, CAUSAL, PRECISION)

    out = acc / l_i[:, None]  # the softmax's normalisation, once per row instead of once per block
    in_range = rows < t_q
    tl.store(o_base + rows[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :], out.to(O.dtype.element_ty),
             mask=in_range[:, None])
    tl.store(LSE + bh * t_q + rows, m_i + tl.math.log2(l_i), mask=in_range)


@triton.jit
def _bwd_delta(O, DO, DELTA, t_q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, ACC: tl.constexpr):
    """delta = rowsum(dO * O) (B * H, T_q). Grid (cdiv(T_q, BLOCK_M), B * H).

    The softmax backward needs sum_j P_ij dP_ij for every row i; since dP = dO V^T and O = P V, that sum
    equals the row's dO . O, which costs D numbers per row instead of T_k.
    """
    bh = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    o = _load_tile(O + bh * t_q * HEAD_DIM, rows, t_q, HEAD_DIM, True).to(ACC)
    do = _load_tile(DO + bh * t_q * HEAD_DIM, rows, t_q, HEAD_DIM, True).to(ACC)
    tl.store(DELTA + bh * t_q + rows, tl.sum(o * do, 1), mask=rows < t_q)


@triton.jit
def _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, cols, lo, hi, t_q, t_k, qk_scale,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
                PRECISION: tl.constexpr):
    """Add to dk, dv (BLOCK_N, HEAD_DIM) what the query blocks starting at lo, lo + BLOCK_M, ... < hi contribute.

    The tiles are transposed (keys along the first axis), so dV += P^T dO and dK += dS^T Q need no transpose.
    dK is left unscaled (the caller multiplies by the softmax scale once).
    """
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        q = _load_tile(q_base, rows, t_q, HEAD_DIM, MASKED)
        do = _load_tile(do_base, rows, t_q, HEAD_DIM, MASKED)
        lse = _load_row_stats(lse_base, rows, t_q, MASKED)
        delta = _load_row_stats(delta_base, rows, t_q, MASKED)
        s_t = _dot(k, tl.trans(q), PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
        p_t = tl.math.exp2(s_t - lse[None, :])  # the forward's probabilities, recomputed from the saved lse
        if MASKED:
            if CAUSAL:  # key j (tile row) is seen by query i (tile column) only if j <= i
                p_t = tl.where(cols[:, None] <= rows[None, :], p_t, 0.0)
            # Keys past T_k and queries past T_q need no mask here: a padded key only changes its own dK and dV
            # rows, which are never stored; a padded query has dO = 0 and delta = 0, so it adds 0 to both.
        dv += _dot(p_t.to(do.dtype), do, PRECISION)
        dp_t = _dot(v, tl.trans(do), PRECISION)  # dP^T = V dO^T
        ds_t = p_t * (dp_t - delta[None, :])  # softmax backward: dS = P * (dP - rowsum(P * dP))
        dk += _dot(ds_t.to(q.dtype), q, PRECISION)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, DK, DV, LSE, DELTA, t_q, t_k, qk_scale, sm_scale,
                   HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                   ACC: tl.constexpr, PRECISION: tl.constexpr):
    """dK and dV. Grid (cdiv(T_k, BLOCK_N), B * H): one program per block of keys, looping over the queries."""
    tl.static_assert(BLOCK_N % BLOCK_M == 0)  # the diagonal is covered by whole query blocks
    bh = tl.program_id(1).to(tl.int64)
    q_base, do_base = Q + bh * t_q * HEAD_DIM, DO + bh * t_q * HEAD_DIM
    lse_base, delta_base = LSE + bh * t_q, DELTA + bh * t_q
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k = _load_tile(K + bh * t_k * HEAD_DIM, cols, t_k, HEAD_DIM, True)
    v = _load_tile(V + bh * t_k * HEAD_DIM, cols, t_k, HEAD_DIM, True)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=ACC)
    if CAUSAL:
        # Queries before this key block cannot see it: start at the diagonal, whose BLOCK_N queries need the mask.
        diag = tl.program_id(0) * BLOCK_N
        dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, cols, diag,
                             tl.minimum(diag + BLOCK_N, t_q), t_q, t_k, qk_scale,
                             HEAD_DIM, BLOCK_M, True, CAUSAL, PRECISION)
        lo = diag + BLOCK_N
    else:
        lo = 0
    # Below the diagonal every query sees every key of the block: whole query blocks unmasked, then the ragged rest.
    full = lo + tl.maximum(t_q - lo, 0) // BLOCK_M * BLOCK_M
    dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, cols, lo, full, t_q, t_k, qk_scale,
                         HEAD_DIM, BLOCK_M, False, CAUSAL, PRECISION)
    dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, cols, full, t_q, t_q, t_k, qk_scale,
                         HEAD_DIM, BLOCK_M, True, CAUSAL, PRECISION)

    ptrs = cols[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :]
    in_range = (cols < t_k)[:, None]
    tl.store(DK + bh * t_k * HEAD_DIM + ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=in_range)
    tl.store(DV + bh * t_k * HEAD_DIM + ptrs, dv.to(DV.dtype.element_ty), mask=in_range)


@triton.jit
def _dq_inner(dq, q, do, lse, delta, k_base, v_base, rows, lo, hi, t_q, t_k, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
              PRECISION: tl.constexpr):
    """Add to dq (BLOCK_M, HEAD_DIM) what the key blocks starting at lo, lo + BLOCK_N, ... < hi contribute.

    dQ is left unscaled (the caller multiplies by the softmax scale once).
    """
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_tile(k_base, cols, t_k, HEAD_DIM, MASKED)
        v = _load_tile(v_base, cols, t_k, HEAD_DIM, MASKED)
        s = _dot(q, tl.trans(k), PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        p = tl.math.exp2(s - lse[:, None])
        if MASKED:
            p = tl.where(_keep(rows, cols, t_k, CAUSAL), p, 0.0)
        dp = _dot(do, tl.trans(v), PRECISION)  # dP = dO V^T
        ds = p * (dp - delta[:, None])
        dq += _dot(ds.to(k.dtype), k, PRECISION)
    return dq


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, DQ, LSE, DELTA, t_q, t_k, qk_scale, sm_scale,
                 HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                 ACC: tl.constexpr, PRECISION: tl.constexpr):
    """dQ. Grid (cdiv(T_q, BLOCK_M), B * H): one program per block of queries, looping over the keys."""
    tl.static_assert(BLOCK_M % BLOCK_N == 0)
    block = tl.program_id(0)
    if CAUSAL:  # the longest programs first, as in the forward pass
        block = tl.num_programs(0) - 1 - block
    bh = tl.program_id(1).to(tl.int64)
    q_base = Q + bh * t_q * HEAD_DIM
    k_base, v_base = K + bh * t_k * HEAD_DIM, V + bh * t_k * HEAD_DIM
    rows = block * BLOCK_M + tl.arange(0, BLOCK_M)
    q = _load_tile(q_base, rows, t_q, HEAD_DIM, True)
    do = _load_tile(DO + bh * t_q * HEAD_DIM, rows, t_q, HEAD_DIM, True)
    lse = _load_row_stats(LSE + bh * t_q, rows, t_q, True)
    delta = _load_row_stats(DELTA + bh * t_q, rows, t_q, True)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=ACC)
    if CAUSAL:
        diag = block * BLOCK_M
        dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, rows, 0, diag, t_q, t_k, qk_scale,
                       HEAD_DIM, BLOCK_N, False, CAUSAL, PRECISION)
        dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, rows, diag, tl.minimum(diag + BLOCK_M, t_k),
                       t_q, t_k, qk_scale, HEAD_DIM, BLOCK_N, True, CAUSAL, PRECISION)
    else:
        full = t_k // BLOCK_N * BLOCK_N
        dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, rows, 0, full, t_q, t_k, qk_scale,
                       HEAD_DIM, BLOCK_N, False, CAUSAL, PRECISION)
        dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, rows, full, t_k, t_q, t_k, qk_scale,
                       HEAD_DIM, BLOCK_N, True, CAUSAL, PRECISION)
    tl.store(DQ + bh * t_q * HEAD_DIM + rows[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :],
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=(rows < t_q)[:, None])


# ---------------------------------------------------------------------------------------------------
# Launch settings: small fixed blocks for the interpreter, an autotuned short list on the GPU.
# ---------------------------------------------------------------------------------------------------

INTERPRETED = isinstance(_attn_fwd, InterpretedFunction)
"""True when TRITON_INTERPRET=1 was set before this module was imported: the kernels run on the CPU."""


def _fix_interpreter_loop_bounds() -> None:
    """Let the interpreter use a run-time value as a loop bound under NumPy >= 2.4.

    Triton 3.6's interpreter holds a scalar as a NumPy array of shape (1,) and turns it into a Python int with
    ``int(array)`` (for ``range(lo, hi, step)``); NumPy 2.4 made that a TypeError (only 0-d arrays convert).
    We wrap the interpreter's patching of ``tl.tensor`` so that ``__index__`` reads the one element instead.
    The compiled GPU path never runs this code.
    """
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor
    if getattr(original, "_reads_one_element", False):
        return

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patch_lang_tensor._reads_one_element = True
    interpreter._patch_lang_tensor = patch_lang_tensor


if INTERPRETED:
    if not isinstance(tl.standard.max, InterpretedFunction):
        raise ImportError(
            "TRITON_INTERPRET=1 was set after triton had been imported, so triton's own helpers were compiled for a "
            "GPU while this module's kernels are interpreted: set TRITON_INTERPRET=1 before anything imports triton"
        )
    _fix_interpreter_loop_bounds()

# Blocks of 16/32 under the interpreter: several blocks (diagonal, full, ragged) even at T of a few dozen, with
# the same BLOCK_M : BLOCK_N shapes as the GPU choices, so the CPU tests walk the same code paths.
_INTERPRETER_BLOCKS = {
    "fwd": {"BLOCK_M": 32, "BLOCK_N": 16},
    "dkdv": {"BLOCK_M": 16, "BLOCK_N": 32},
    "dq": {"BLOCK_M": 32, "BLOCK_N": 16},
}
_DELTA_BLOCK = 32 if INTERPRETED else 128


def _configs(choices):
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) tuples -> triton.Config list."""
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in choices]


# Candidates for Hopper (H100/H200), bf16/fp16, head size 64-128: big query tiles in the forward pass (one
# warpgroup per 64 rows), and in the backward pass a big tile of the index the program owns and a small tile of
# the one it loops over, which keeps the accumulators (dK and dV, or dQ) in registers. A choice that needs
# more shared memory than the chip has is skipped by the autotuner.
# Kept short: every choice is compiled once per head size, causal flag and dtype (seconds each).
_FWD_CONFIGS = _configs([(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3)])
_DKDV_CONFIGS = _configs([(32, 128, 4, 3), (32, 128, 4, 5), (64, 128, 8, 3)])
_DQ_CONFIGS = _configs([(128, 32, 4, 3), (128, 32, 4, 5), (128, 64, 8, 3)])
# Retuned per length, head size and causal flag (and, automatically, per dtype of the tensor arguments).
_TUNE_KEY = ["t_q", "t_k", "HEAD_DIM", "CAUSAL"]

if INTERPRETED:
    _launch_fwd, _launch_dkdv, _launch_dq = _attn_fwd, _attn_bwd_dkdv, _attn_bwd_dq
else:
    _launch_fwd = triton.autotune(_FWD_CONFIGS, key=_TUNE_KEY)(_attn_fwd)
    _launch_dkdv = triton.autotune(_DKDV_CONFIGS, key=_TUNE_KEY)(_attn_bwd_dkdv)
    _launch_dq = triton.autotune(_DQ_CONFIGS, key=_TUNE_KEY)(_attn_bwd_dq)


def _blocks(kernel: str) -> dict:
    """Block sizes to pass at launch: fixed under the interpreter, none on the GPU (the autotuner picks them)."""
    return dict(_INTERPRETER_BLOCKS[kernel]) if INTERPRETED else {}


def _kernel_types(dtype: torch.dtype) -> tuple:
    """(accumulator dtype, tl.dot input precision) for inputs of ``dtype``.

    "ieee": float32 inputs are multiplied in full float32 (Triton would otherwise use TF32, ~1e-3 relative error);
    for half-precision inputs the setting does not apply and "tf32" is Triton's default.
    """
    if dtype == torch.float64:
        return tl.float64, "ieee"
    return tl.float32, ("ieee" if dtype == torch.float32 else "tf32")


# ---------------------------------------------------------------------------------------------------
# Host side: checks, launches, autograd.
# ---------------------------------------------------------------------------------------------------

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _padded_head_dim(d: int) -> int:
    """The head size the kernels use: the next power of two, at least 16 (tl.dot's smallest tile side)."""
    return max(16, triton.next_power_of_2(d))


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (B, H, T, D); got shape {tuple(t.shape)}")
    if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
        raise ValueError(
            f"q, k, v must share (B, H); got {tuple(q.shape[:2])}, {tuple(k.shape[:2])}, {tuple(v.shape[:2])}"
        )
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"keys and values must have the same length T_k; got {k.shape[2]} and {v.shape[2]}")
    if not (q.shape[3] == k.shape[3] == v.shape[3]):
        raise ValueError(
            f"the Triton kernel needs one head size D for q, k and v; got {q.shape[3]}, {k.shape[3]}, {v.shape[3]}"
        )
    d = q.shape[3]
    if not 1 <= d <= MAX_HEAD_DIM:
        raise ValueError(
            f"head size D must be between 1 and {MAX_HEAD_DIM} (a tile of D columns must fit on chip); got D={d}"
        )
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"sequence lengths must be at least 1; got T_q={q.shape[2]}, T_k={k.shape[2]}")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal=True needs T_q == T_k; got T_q={q.shape[2]}, T_k={k.shape[2]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must have the same dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in _DTYPES:
        raise ValueError(f"dtype must be float16, bfloat16 or float32 (float64 under the interpreter); got {q.dtype}")
    if q.dtype == torch.float64 and not INTERPRETED:
        raise ValueError("float64 runs only under the interpreter (TRITON_INTERPRET=1), for checking")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device; got {q.device}, {k.device}, {v.device}")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number or None; got {scale!r}")
    _check_device(q.device)


def _check_device(device: torch.device) -> None:
    if device.type == "cuda" or (INTERPRETED and device.type == "cpu"):
        return
    if device.type == "cpu":
        raise RuntimeError(
            "the Triton flash-attention kernels need CUDA tensors on an NVIDIA GPU. To run them on the CPU, set "
            "TRITON_INTERPRET=1 in the environment before anything imports triton, then import "
            "mastering_transformers.flash_triton (Triton's interpreter: slow, small sizes only)"
        )
    raise RuntimeError(f"the Triton kernels run on CUDA devices (or on the CPU under TRITON_INTERPRET=1); got {device}")


def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float):
    """Contiguous (B, H, T_q, D), (B, H, T_k, D) x 2 with D a power of two -> out (B, H, T_q, D), lse2 (B, H, T_q).

    lse2 is the log-sum-exp of each row's scores in base 2 (float32; float64 for float64 inputs).
    """
    b, h, t_q, d = q.shape
    t_k = k.shape[2]
    acc, precision = _kernel_types(q.dtype)
    out = torch.empty_like(q)
    lse2 = torch.empty(b, h, t_q, device=q.device, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32)
    grid = lambda meta: (triton.cdiv(t_q, meta["BLOCK_M"]), b * h)  # noqa: E731
    _launch_fwd[grid](q, k, v, out, lse2, t_q, t_k, scale * LOG2E, HEAD_DIM=d, CAUSAL=causal, ACC=acc,
                      PRECISION=precision, **_blocks("fwd"))
    return out, lse2


def _backward(do, q, k, v, out, lse2, causal: bool, scale: float):
    """Gradients (dq, dk, dv) of the attention output from dO (B, H, T_q, D) and the forward's out and lse2."""
    b, h, t_q, d = q.shape
    t_k = k.shape[2]
    acc, precision = _kernel_types(q.dtype)
    do = do.contiguous()
    delta = torch.empty_like(lse2)
    _bwd_delta[(triton.cdiv(t_q, _DELTA_BLOCK), b * h)](out, do, delta, t_q, HEAD_DIM=d, BLOCK_M=_DELTA_BLOCK,
                                                        ACC=acc)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    grid_k = lambda meta: (triton.cdiv(t_k, meta["BLOCK_N"]), b * h)  # noqa: E731
    _launch_dkdv[grid_k](q, k, v, do, dk, dv, lse2, delta, t_q, t_k, scale * LOG2E, scale, HEAD_DIM=d,
                         CAUSAL=causal, ACC=acc, PRECISION=precision, **_blocks("dkdv"))
    grid_q = lambda meta: (triton.cdiv(t_q, meta["BLOCK_M"]), b * h)  # noqa: E731
    _launch_dq[grid_q](q, k, v, do, dq, lse2, delta, t_q, t_k, scale * LOG2E, scale, HEAD_DIM=d,
                       CAUSAL=causal, ACC=acc, PRECISION=precision, **_blocks("dq"))
    return dq, dk, dv


class FlashAttentionTriton(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, the output and the lse (never the (T_q, T_k) probabilities)."""

    @staticmethod
    def forward(ctx, q, k, v, causal, scale):
        with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
            out, lse2 = _forward(q, k, v, causal, scale)
        ctx.save_for_backward(q, k, v, out, lse2)
        ctx.causal, ctx.scale = causal, scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        q, k, v, out, lse2 = ctx.saved_tensors
        with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
            dq, dk, dv = _backward(dout, q, k, v, out, lse2, ctx.causal, ctx.scale)
        return dq, dk, dv, None, None


def _prepare(q, k, v, causal, scale):
    """Check the inputs; return contiguous q, k, v zero-padded to the kernels' head size, the scale and the true D."""
    _check_inputs(q, k, v, causal, scale)
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)  # of the true head size, not the padded one
    d_pad = _padded_head_dim(d)
    if d_pad != d:
        # Zero columns add nothing to q . k, and the extra output columns (attention over zeros) are cut off.
        q, k, v = (torch.nn.functional.pad(t, (0, d_pad - d)) for t in (q, k, v))
    return q.contiguous(), k.contiguous(), v.contiguous(), scale, d


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """Exact attention by the Triton kernels: (B, H, T_q, D), (B, H, T_k, D), (B, H, T_k, D) -> (B, H, T_q, D).

    Equal to ``F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)`` up to rounding, and
    differentiable (the backward kernels recompute the probabilities from the saved log-sum-exp). ``scale``
    defaults to 1 / sqrt(D). ``causal=True`` needs T_q = T_k. CUDA tensors, or CPU tensors under
    TRITON_INTERPRET=1 (see the module docstring).
    """
    q_, k_, v_, scale, d = _prepare(q, k, v, bool(causal), scale)
    out = FlashAttentionTriton.apply(q_, k_, v_, bool(causal), scale)
    return out if out.shape[-1] == d else out[..., :d]


@torch.no_grad()
def flash_attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward kernel alone: -> (out (B, H, T_q, D), lse (B, H, T_q)), lse = log sum_j exp(score_ij).

    lse (natural log, float32; float64 for float64 inputs) is what the backward pass keeps instead of P.
    """
    q_, k_, v_, scale, d = _prepare(q, k, v, bool(causal), scale)
    with torch.cuda.device(q_.device) if q_.is_cuda else contextlib.nullcontext():
        out, lse2 = _forward(q_, k_, v_, bool(causal), scale)
    return out[..., :d], lse2 * math.log(2.0)
