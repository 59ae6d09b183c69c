"""Flash attention in plain PyTorch: exact attention without the T x T matrix (chapter 12 derives it).

Attention as written in chapter 2 builds the scores S = Q K^T * scale, a (T_q, T_k) matrix per head, then
P = softmax(S), then P V. Flash attention (Dao et al., 2022) computes the same output tile by tile:

* **online softmax**: a row's softmax can be accumulated over blocks of keys, keeping only a running maximum
  ``m``, a running sum ``l`` of ``exp(s - m)``, and a running output ``acc``; when a new block raises the
  maximum, the old sum and output are *rescaled* by ``exp(m_old - m_new)`` (``online_softmax_update``,
  ``attention_block_update``);
* **tiled forward**: for each block of ``block_q`` queries, loop over blocks of ``block_k`` keys, so that only a
  (block_q, block_k) tile of scores exists at a time; with ``causal=True`` the tiles entirely above the diagonal
  are skipped, not computed and masked (``tiled_attention_forward``, which also returns the log-sum-exp
  ``lse = m + log l`` of every row);
* **tiled backward**: the probabilities of a tile are recomputed from the saved ``lse`` as ``exp(S - lse)``, and
  the softmax's backward uses ``D = rowsum(dO * O)`` instead of a row of P (``tiled_attention_backward``);
* ``FlashAttention`` wraps both in a ``torch.autograd.Function`` and ``flash_attention`` is its entry point,
  registered as the ``"flash"`` backend of ``mt.attention.ATTENTION_BACKENDS``.

Shapes: q (B, H, T_q, D), k (B, H, T_k, D), v (B, H, T_k, D_v) -> out (B, H, T_q, D_v), lse (B, H, T_q).
``causal=True`` is aligned at the top left, like ``mt.causal_mask`` and ``F.scaled_dot_product_attention``.
A query row with no key to attend to (only when T_k = 0 here) gets an output of 0 and ``lse = -inf``, as in
``mt.scaled_dot_product_attention``. Half-precision inputs are computed in float32 and cast back.
The Triton kernel of the same algorithm is ``mt.flash_triton`` (chapter 12).

``TensorMemory`` measures what the chapter's memory argument is about: the peak number of bytes held by the
tensors an operation creates.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "FlashAttention",
    "TensorMemory",
    "attention_block_update",
    "causal_block_counts",
    "flash_attention",
    "online_softmax",
    "online_softmax_update",
    "tiled_attention_backward",
    "tiled_attention_forward",
]


# ---------------------------------------------------------------------------------------------------
# Online softmax
# ---------------------------------------------------------------------------------------------------


def _safe(m: torch.Tensor) -> torch.Tensor:
    """The running max with -inf replaced by 0: a row that has seen only -inf has nothing to rescale."""
    return torch.where(torch.isneginf(m), torch.zeros_like(m), m)


def online_softmax_update(
    m: torch.Tensor, l: torch.Tensor, scores: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one block of scores into a row's running max and running sum: (...), (...), (..., n) -> (...), (...).

    m' = max(m, max_j s_j),   l' = l * exp(m - m') + sum_j exp(s_j - m').

    The old sum was accumulated relative to the old maximum, so it is rescaled by exp(m - m') before the new
    terms are added. Start from m = -inf, l = 0. Scores of -inf (masked) contribute nothing; a row that has seen
    only -inf keeps m = -inf and l = 0.
    """
    if scores.dim() < 1 or scores.shape[:-1] != m.shape or m.shape != l.shape:
        raise ValueError(
            f"m and l must have the scores' shape without its last dim; got m {tuple(m.shape)}, "
            f"l {tuple(l.shape)}, scores {tuple(scores.shape)}"
        )
    m_new = torch.maximum(m, scores.amax(dim=-1)) if scores.shape[-1] else m
    m_safe = _safe(m_new)
    l_new = l * torch.exp(m - m_safe) + torch.exp(scores - m_safe[..., None]).sum(dim=-1)
    return m_new, l_new


def online_softmax(x: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the last dim, computed in blocks of ``block_size``: (..., n) -> probabilities (..., n), lse (...).

    One pass over the blocks with ``online_softmax_update`` gives every row's max m and sum l (never holding more
    than one block of exponentials); the probabilities are then exp(x - m) / l, and lse = m + log l. A row of
    all -inf gets probabilities 0 and lse = -inf (as ``mt.scaled_dot_product_attention`` defines it).
    """
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size <= 0:
        raise ValueError(f"block_size must be a positive int; got {block_size!r}")
    if x.dim() < 1:
        raise ValueError("x needs at least one dim (the one the softmax runs over)")
    m = torch.full(x.shape[:-1], float("-inf"), dtype=x.dtype, device=x.device)
    l = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[-1], block_size):
        m, l = online_softmax_update(m, l, x[..., start:start + block_size])
    p = torch.exp(x - _safe(m)[..., None]) / torch.where(l > 0, l, torch.ones_like(l))[..., None]
    return p, m + torch.log(l)


def attention_block_update(
    m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor, scores: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One tile of flash attention: (..., bq), (..., bq), (..., bq, D_v), (..., bq, bk), (..., bk, D_v) -> m, l, acc.

    As ``online_softmax_update`` for m and l, and the unnormalised output acc = sum_j exp(s_j - m) v_j is
    rescaled the same way: acc' = acc * exp(m - m') + exp(S - m') V. The output is acc / l once every block
    has been seen.
    """
    m_new = torch.maximum(m, scores.amax(dim=-1))
    m_safe = _safe(m_new)
    alpha = torch.exp(m - m_safe)  # how much the old maximum overstated: rescales the old sum and output
    p = torch.exp(scores - m_safe[..., None])  # (..., bq, bk), unnormalised
    return m_new, alpha * l + p.sum(dim=-1), alpha[..., None] * acc + p.to(v.dtype) @ v


# ---------------------------------------------------------------------------------------------------
# Tiled forward and backward
# ---------------------------------------------------------------------------------------------------


def _check_block(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 4-D tensor (B, H, T, D); got {shape}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor; got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
        raise ValueError(
            f"q, k, v must share (B, H); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries and keys must have the same head size D: q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values must have the same length T_k: k {tuple(k.shape)}, v {tuple(v.shape)}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _tile_scores(q_blk, k_blk, scale, causal, q0, k0):
    """Scores of one tile (B, H, bq, bk), with -inf where a causal key lies after its query."""
    s = (q_blk @ k_blk.transpose(-2, -1)) * scale
    if causal and k0 + k_blk.shape[-2] - 1 > q0:  # the tile reaches above the diagonal: mask inside it
        rows = torch.arange(q0, q0 + q_blk.shape[-2], device=s.device)[:, None]
        cols = torch.arange(k0, k0 + k_blk.shape[-2], device=s.device)[None, :]
        s = s.masked_fill(cols > rows, float("-inf"))
    return s


def causal_block_counts(t_q: int, t_k: int, block_q: int, block_k: int) -> tuple[int, int]:
    """(tiles computed, tiles skipped) of a causal tiled pass over a (t_q, t_k) score matrix.

    A tile of queries q0 .. q0 + block_q - 1 and keys k0 .. is skipped when k0 > q0 + block_q - 1: every key in
    it comes after every query in it. Without ``causal`` all ceil(t_q / block_q) * ceil(t_k / block_k) tiles
    are computed.
    """
    computed = skipped = 0
    for q0 in range(0, t_q, block_q):
        last_query = min(q0 + block_q, t_q) - 1
        for k0 in range(0, t_k, block_k):
            if k0 > last_query:
                skipped += 1
            else:
                computed += 1
    return computed, skipped


def tiled_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    block_q: int = 64,
    block_k: int = 64,
    stats: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact attention tile by tile: (B, H, T_q, D), (B, H, T_k, D), (B, H, T_k, D_v) -> out (B, H, T_q, D_v), lse (B, H, T_q).

    Never holds more than one (B, H, block_q, block_k) tile of scores. ``lse`` is the log-sum-exp of each row of
    scaled (and masked) scores, what the backward pass needs to recompute the probabilities. With ``causal``
    the tiles whose keys all come after their queries are skipped; pass a dict as ``stats`` to have the number
    of tiles ``"computed"`` and ``"skipped"`` added to it.
    """
    _check_qkv(q, k, v)
    _check_block("block_q", block_q)
    _check_block("block_k", block_k)
    b, h, t_q, d = q.shape
    t_k, d_v = k.shape[-2], v.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    cdt = _compute_dtype(q.dtype)
    out = torch.empty(b, h, t_q, d_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(b, h, t_q, dtype=cdt, device=q.device)
    computed = skipped = 0
    for q0 in range(0, t_q, block_q):
        q_blk = q[:, :, q0:q0 + block_q].to(cdt)
        n = q_blk.shape[-2]
        m = torch.full((b, h, n), float("-inf"), dtype=cdt, device=q.device)
        l = torch.zeros(b, h, n, dtype=cdt, device=q.device)
        acc = torch.zeros(b, h, n, d_v, dtype=cdt, device=q.device)
        for k0 in range(0, t_k, block_k):
            if causal and k0 > q0 + n - 1:  # this tile and all tiles to its right lie above the diagonal
                skipped += len(range(k0, t_k, block_k))
                break
            s = _tile_scores(q_blk, k[:, :, k0:k0 + block_k].to(cdt), scale, causal, q0, k0)
            m, l, acc = attention_block_update(m, l, acc, s, v[:, :, k0:k0 + block_k].to(cdt))
            computed += 1
        # the final normalisation; a row that saw no key (l = 0) has output 0
        out[:, :, q0:q0 + n] = (acc / torch.where(l > 0, l, torch.ones_like(l))[..., None]).to(q.dtype)
        lse[:, :, q0:q0 + n] = m + torch.log(l)
    if stats is not None:
        stats["computed"] = stats.get("computed", 0) + computed
        stats["skipped"] = stats.get("skipped", 0) + skipped
    return out, lse


def tiled_attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    dout: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    block_q: int = 64,
    block_k: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) of attention from the forward's ``out`` and ``lse`` and the output gradient ``dout``.

    Per tile: P = exp(S - lse) (recomputed, never stored), dV += P^T dO, dP = dO V^T, dS = P * (dP - D) with
    D = rowsum(dO * O) (= rowsum(P * dP), computed once per row from two (T, D_v) tensors), dQ += dS K * scale,
    dK += dS^T Q * scale. Same tiles as the forward, same causal skipping.
    """
    _check_qkv(q, k, v)
    _check_block("block_q", block_q)
    _check_block("block_k", block_k)
    if out.shape != (*q.shape[:-1], v.shape[-1]) or dout.shape != out.shape or lse.shape != q.shape[:-1]:
        raise ValueError(
            f"out and dout must be (B, H, T_q, D_v) and lse (B, H, T_q); got out {tuple(out.shape)}, "
            f"dout {tuple(dout.shape)}, lse {tuple(lse.shape)} for q {tuple(q.shape)}, v {tuple(v.shape)}"
        )
    t_q, d = q.shape[-2], q.shape[-1]
    t_k = k.shape[-2]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    cdt = _compute_dtype(q.dtype)
    qc, kc, vc, doc = q.to(cdt), k.to(cdt), v.to(cdt), dout.to(cdt)
    big_d = (doc * out.to(cdt)).sum(dim=-1)  # (B, H, T_q): D_i = sum_j P_ij dP_ij
    lse_safe = torch.where(torch.isneginf(lse), torch.full_like(lse, float("inf")), lse).to(cdt)
    dq, dk, dv = torch.zeros_like(qc), torch.zeros_like(kc), torch.zeros_like(vc)
    for k0 in range(0, t_k, block_k):
        k_blk, v_blk = kc[:, :, k0:k0 + block_k], vc[:, :, k0:k0 + block_k]
        for q0 in range(0, t_q, block_q):
            n = min(block_q, t_q - q0)
            if causal and k0 > q0 + n - 1:
                continue
            q_blk, do_blk = qc[:, :, q0:q0 + n], doc[:, :, q0:q0 + n]
            s = _tile_scores(q_blk, k_blk, scale, causal, q0, k0)
            p = torch.exp(s - lse_safe[:, :, q0:q0 + n, None])  # the forward's probabilities, recomputed
            dv[:, :, k0:k0 + block_k] += p.transpose(-2, -1) @ do_blk
            ds = p * (do_blk @ v_blk.transpose(-2, -1) - big_d[:, :, q0:q0 + n, None])
            dq[:, :, q0:q0 + n] += (ds @ k_blk) * scale
            dk[:, :, k0:k0 + block_k] += (ds.transpose(-2, -1) @ q_blk) * scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class FlashAttention(torch.autograd.Function):
    """Tiled attention whose backward recomputes the scores: saves only q, k, v, out and lse (no T x T)."""

    @staticmethod
    def forward(ctx, q, k, v, causal=False, scale=None, block_q=64, block_k=64):
        out, lse = tiled_attention_forward(q, k, v, causal=causal, scale=scale, block_q=block_q, block_k=block_k)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.options = dict(causal=causal, scale=scale, block_q=block_q, block_k=block_k)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = tiled_attention_backward(q, k, v, out, lse, dout.contiguous(), **ctx.options)
        return dq, dk, dv, None, None, None, None


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    block_q: int = 64,
    block_k: int = 64,
) -> torch.Tensor:
    """Attention output (B, H, T_q, D), (B, H, T_k, D), (B, H, T_k, D_v) -> (B, H, T_q, D_v), differentiable.

    Equal to ``F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)`` up to rounding, with
    memory linear in T in the forward and the backward pass. ``scale`` defaults to 1 / sqrt(D).
    """
    _check_qkv(q, k, v)
    _check_block("block_q", block_q)
    _check_block("block_k", block_k)
    return FlashAttention.apply(q, k, v, bool(causal), scale, block_q, block_k)


# ---------------------------------------------------------------------------------------------------
# Measuring memory
# ---------------------------------------------------------------------------------------------------


class TensorMemory(TorchDispatchMode):
    """Context manager: the bytes of tensor storage that the code inside it allocates, now and at the peak.

        with torch.no_grad(), TensorMemory() as mem:
            out = attention(q, k, v)
        mem.peak  # bytes

    Every aten operation run inside is intercepted (a ``TorchDispatchMode``); each new storage among its outputs
    is counted until the last tensor that refers to it is garbage-collected. Storages that existed before (the
    inputs, and views of them) are not counted; temporary buffers inside a single kernel are not seen. It works
    on any device, CPU included, where PyTorch keeps no allocator statistics.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._refs: dict[int, int] = {}
        self._size: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            self.current -= self._size.pop(key)
            del self._refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or (key in inputs and key not in self._refs):  # empty, or a view of an older tensor
                continue
            if key not in self._refs:
                self._refs[key], self._size[key] = 0, size
                self.current += size
                self.peak = max(self.peak, self.current)
            self._refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out
