"""Scaled dot-product attention, the core of the transformer (chapter 2 derives it; chapter 3 the scale).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + mask) V

This is the one implementation later chapters import. It returns the attention weights as well as
the output, because the course looks at them (heat maps, bertviz, head analysis).

Chapter 4 adds multi-head attention on top: ``split_heads`` (B, T, C) -> (B, H, T, D), attention in
every head at once, ``merge_heads`` back to (B, T, C), and the output projection W_O
(``MultiHeadAttention``, with grouped-/multi-query key/value heads via ``n_kv_head``).

Chapter 10 gives ``MultiHeadAttention`` two options the full GPT needs: a positional hook (``pos="rope"``
rotates queries and keys per head with ``mt.apply_rope``; ``pos="alibi"`` adds ``mt.alibi_bias`` to the
scores), and a choice of attention backend (``backend="mt"``, the course's formula above, or ``"sdpa"``,
PyTorch's fused kernel). Backends live in ``ATTENTION_BACKENDS``, so later chapters can register more
(chapter 12: flash attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .positional import alibi_bias, alibi_slopes, apply_rope


def causal_mask(t_q: int, t_k: int | None = None, device: str | torch.device | None = None) -> torch.Tensor:
    """Boolean mask (T_q, T_k), True where query i may attend to key j, i.e. j <= i.

    Aligned at the top-left like ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``.
    """
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: torch.Tensor, t_k: int) -> torch.Tensor:
    """Boolean key mask (B, 1, 1, T_k) from sequence lengths (B,): True on real tokens, False on padding.

    It broadcasts against scores of shape (B, H, T_q, T_k).
    """
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,); got shape {tuple(lengths.shape)}")
    keep = torch.arange(t_k, device=lengths.device)[None, :] < lengths[:, None]
    return keep[:, None, None, :]


def _check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError(
            f"q, k, v need at least 2 dims (..., T, D); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries and keys must have the same feature size d_k to be compared: "
            f"q has {q.shape[-1]} (shape {tuple(q.shape)}), k has {k.shape[-1]} (shape {tuple(k.shape)})"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"keys and values must come in pairs (same length T_k): "
            f"k has {k.shape[-2]} (shape {tuple(k.shape)}), v has {v.shape[-2]} (shape {tuple(v.shape)})"
        )
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"q, k, v must share their leading (batch, head) dims; got "
            f"{tuple(q.shape[:-2])}, {tuple(k.shape[:-2])}, {tuple(v.shape[:-2])}"
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output and weights: (..., T_q, D), (..., T_k, D), (..., T_k, D_v) -> (..., T_q, D_v), (..., T_q, T_k).

    ``mask`` follows PyTorch's convention: a boolean mask is True where attention is *allowed*;
    a float mask is *added* to the scores (use ``-inf`` to forbid). It must broadcast to (..., T_q, T_k).
    ``is_causal`` applies ``causal_mask`` instead (not both). A query row with every key masked has
    no defined weights; it gets weights of 0 and an output of 0 rather than NaN.
    The returned weights are those before dropout; the output uses the dropped-out ones.
    """
    _check_shapes(q, k, v)
    if mask is not None and is_causal:
        raise ValueError("pass either mask or is_causal=True, not both")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1); got {dropout_p}")
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale

    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, T_k): one score per query-key pair
    if is_causal:
        mask = causal_mask(t_q, t_k, device=q.device)
    if mask is not None:
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape {tuple(scores.shape)}"
            ) from None
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = torch.softmax(scores, dim=-1)
    # A fully masked row is softmax over all -inf = NaN; define it as "attends to nothing".
    weights = weights.masked_fill(torch.isneginf(scores).all(dim=-1, keepdim=True), 0.0)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights


# ---------------------------------------------------------------------------------------------------
# Attention backends (chapter 10): the same function computed by different code.
# ---------------------------------------------------------------------------------------------------


def _mt_backend(q, k, v, mask=None, dropout_p=0.0, is_causal=False):
    return scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p, is_causal=is_causal)[0]


def _sdpa_backend(q, k, v, mask=None, dropout_p=0.0, is_causal=False):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


def _flash_backend(q, k, v, mask=None, dropout_p=0.0, is_causal=False):
    # chapter 12's tiled attention; imported here, on first use, so that attention.py stays the lower module
    if mask is not None:
        raise ValueError(
            "the 'flash' backend supports is_causal=True or no mask, not an explicit mask (padding, ALiBi): "
            "use backend 'mt' or 'sdpa' for those"
        )
    if dropout_p:
        raise ValueError(f"the 'flash' backend has no attention dropout; got dropout_p={dropout_p} (set dropout=0)")
    from .flash import flash_attention

    return flash_attention(q, k, v, causal=is_causal)


def _triton_backend(q, k, v, mask=None, dropout_p=0.0, is_causal=False):
    # chapter 12's Triton kernel; imported on first call, so the package imports without triton installed
    if mask is not None or dropout_p:
        raise ValueError(
            "the 'triton' backend supports is_causal=True or no mask, and no attention dropout; "
            f"got mask={'a tensor' if mask is not None else None}, dropout_p={dropout_p} (use 'mt' or 'sdpa' for those)"
        )
    from .flash_triton import flash_attention as triton_flash_attention

    return triton_flash_attention(q, k, v, causal=is_causal)


ATTENTION_BACKENDS = {"mt": _mt_backend, "sdpa": _sdpa_backend, "flash": _flash_backend, "triton": _triton_backend}
"""Name -> ``fn(q, k, v, mask=None, dropout_p=0.0, is_causal=False)``: (B, H, T, D) x 3 -> (B, H, T, D).

``"mt"`` is the course's ``scaled_dot_product_attention`` (chapters 2-3); ``"sdpa"`` is PyTorch's
``F.scaled_dot_product_attention`` (fused kernels). ``mask`` is bool (True = may attend) or additive float.
``"flash"`` is chapter 12's tiled attention ``mt.flash.flash_attention`` (causal or unmasked, no dropout).
``"triton"`` is chapter 12's Triton kernel ``mt.flash_triton.flash_attention`` (same limits; CUDA, or the CPU
under TRITON_INTERPRET=1; imports triton on first call).
``GPTConfig`` accepts every name listed here.
"""

POSITIONAL_HOOKS = (None, "rope", "alibi")


# ---------------------------------------------------------------------------------------------------
# Multi-head attention (chapter 4): split the model width into heads, attend in each, concatenate, mix.
# ---------------------------------------------------------------------------------------------------


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, D) with D = C // H: head h owns features h*D .. (h+1)*D - 1.

    The view cuts the last dim into (H, D); the transpose then moves the head dim before time, so that
    each head sees a (T, D) matrix. Viewing straight to (B, H, T, D) would mix positions instead.
    """
    if x.dim() != 3:
        raise ValueError(f"split_heads expects (B, T, C); got shape {tuple(x.shape)}")
    b, t, c = x.shape
    if n_head <= 0 or c % n_head != 0:
        raise ValueError(f"n_head={n_head} must be a positive divisor of the feature size C={c}")
    return x.view(b, t, n_head, c // n_head).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) -> (B, T, C) with C = H * D: the inverse of ``split_heads`` (concatenates the heads)."""
    if x.dim() != 4:
        raise ValueError(f"merge_heads expects (B, H, T, D); got shape {tuple(x.shape)}")
    b, h, t, d = x.shape
    # After the transpose the memory is no longer laid out as (B, T, H, D): contiguous() copies it so
    # the view can glue the heads back together feature-wise.
    return x.transpose(1, 2).contiguous().view(b, t, h * d)


class MultiHeadAttention(nn.Module):
    """Multi-head (and grouped-/multi-query) attention: (B, T, C) -> (B, T, C).

    ``n_head`` query heads of size D = d_model // n_head. ``n_kv_head`` key/value heads (default
    ``n_head``); each K/V head serves n_head // n_kv_head query heads (GQA), ``n_kv_head=1`` is MQA.

    ``pos`` (chapter 10) puts position information inside attention: ``"rope"`` rotates every query and key
    head with ``mt.apply_rope`` (base ``rope_base``; needs an even head size), ``"alibi"`` adds
    ``mt.alibi_bias`` (one slope per query head) to the scores; ``None`` (default) adds nothing.
    ``backend`` names an entry of ``ATTENTION_BACKENDS`` ("sdpa", PyTorch's fused kernel, by default, or
    "mt", the course's formula); ``need_weights=True`` always uses the course's function, which returns them.
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        n_kv_head: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        *,
        pos: str | None = None,
        rope_base: float = 10000.0,
        backend: str = "sdpa",
    ):
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if d_model <= 0 or n_head <= 0 or d_model % n_head != 0:
            raise ValueError(
                f"n_head must divide d_model: each head gets d_model // n_head features, "
                f"but d_model={d_model} is not a multiple of n_head={n_head}"
            )
        if n_kv_head <= 0 or n_head % n_kv_head != 0:
            raise ValueError(
                f"n_kv_head must divide n_head: each key/value head is shared by n_head // n_kv_head query heads, "
                f"but n_head={n_head} is not a multiple of n_kv_head={n_kv_head}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        if pos not in POSITIONAL_HOOKS:
            raise ValueError(f"pos must be one of {POSITIONAL_HOOKS}; got {pos!r}")
        if pos == "rope" and (d_model // n_head) % 2:
            raise ValueError(
                f"RoPE rotates pairs of features: the head size d_model // n_head = {d_model // n_head} must be even"
            )
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"backend must be one of {sorted(ATTENTION_BACKENDS)}; got {backend!r}")
        self.d_model, self.n_head, self.n_kv_head = d_model, n_head, n_kv_head
        self.d_head = d_model // n_head
        self.dropout = dropout
        self.pos, self.rope_base, self.backend = pos, rope_base, backend
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_head * self.d_head, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_head * self.d_head, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)  # W_O mixes the concatenated heads

    def _check(self, name: str, t: torch.Tensor) -> None:
        if t.dim() != 3 or t.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have shape (B, T, d_model={self.d_model}); got {tuple(t.shape)}")

    def _alibi(self, t: int, s: int, q_pos: torch.Tensor | None, k_pos: torch.Tensor | None, device) -> torch.Tensor:
        """ALiBi's bias (H, T, S), or (B, H, T, S) for per-row positions: -m_h * (position of query i - of key j)."""
        if q_pos is None and k_pos is None:
            return alibi_bias(self.n_head, t, s, device=device)
        q_pos = torch.arange(t, device=device) if q_pos is None else q_pos
        k_pos = torch.arange(s, device=device) if k_pos is None else k_pos
        slopes = alibi_slopes(self.n_head).to(device)
        distance = q_pos.to(torch.float32)[..., :, None] - k_pos.to(torch.float32)[..., None, :]  # ([B,] T, S)
        return -slopes[:, None, None] * distance.unsqueeze(-3)

    def forward(
        self,
        x: torch.Tensor,
        kv: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        positions: torch.Tensor | None = None,
        cache=None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Queries from x (B, T, C), keys and values from kv (B, S, C) (default x) -> y (B, T, C).

        ``mask``: bool (True = may attend) or additive float, broadcastable to (B, H, T, S); or
        ``is_causal=True`` (not both). With ``need_weights=True`` returns (y, weights (B, H, T, S)),
        computed by ``mt.scaled_dot_product_attention``; otherwise by the ``backend`` chosen at construction.
        ``positions`` (T,): the positions of the queries for ``pos="rope"``/``"alibi"`` (default 0 .. T-1);
        in self-attention the keys share them, in cross-attention (kv given) the keys are at 0 .. S-1.
        Positions may also be given per row, (B, T) (chapter 14: prompts of different lengths in one batch).

        ``cache`` (chapter 14, ``mt.inference``): a layer's KV cache, an object whose
        ``update(k, v, positions) -> (keys, values, mask, key_positions)`` stores the new keys and values
        (B, H_kv, T, D) and returns every key and value to attend to (B, H_kv, S, D), the boolean mask
        (B, 1, T, S) and the keys' positions (B, S). The queries then default to the positions after the
        cached ones, attention is causal by position, and neither ``kv``, ``mask`` nor ``is_causal`` may be given.
        """
        self_attention = kv is None
        kv = x if kv is None else kv
        self._check("x", x)
        self._check("kv", kv)
        if kv.shape[0] != x.shape[0]:
            raise ValueError(f"x and kv must have the same batch size; got {x.shape[0]} and {kv.shape[0]}")
        if mask is not None and is_causal:
            raise ValueError("pass either mask or is_causal=True, not both")
        b, t, _ = x.shape
        s = kv.shape[1]
        if mask is not None:
            target = (b, self.n_head, t, s)
            try:
                ok = torch.broadcast_shapes(mask.shape, target) == target
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to (B, H, T, S)={target}")
        if cache is not None:
            if not self_attention or mask is not None or is_causal:
                raise ValueError(
                    "with a cache the attention is causal self-attention masked by position: pass neither kv, "
                    "mask nor is_causal"
                )
            if positions is None:
                positions = cache.next_positions(b, t)
        if positions is not None:
            positions = torch.as_tensor(positions, device=x.device)
            if positions.shape not in ((t,), (b, t)):
                raise ValueError(
                    f"positions must have shape (T,)=({t},) or (B, T)=({b}, {t}); got {tuple(positions.shape)}"
                )
        k_positions = positions if self_attention else None
        # apply_rope broadcasts positions over (..., T): per-row positions (B, T) become (B, 1, T) for the heads
        rope_pos = positions[:, None, :] if positions is not None and positions.dim() == 2 else positions

        q = split_heads(self.q_proj(x), self.n_head)  # (B, H, T, D)
        k = split_heads(self.k_proj(kv), self.n_kv_head)  # (B, H_kv, S, D)
        v = split_heads(self.v_proj(kv), self.n_kv_head)
        if self.pos == "rope":  # rotate queries and keys (never values) by their positions
            q = apply_rope(q, rope_pos, base=self.rope_base)
            k = apply_rope(k, rope_pos if self_attention else None, base=self.rope_base)
        if cache is not None:  # keys are stored rotated: a cached key never needs its rotation again
            k, v, mask, k_positions = cache.update(k, v, positions)
            s = k.shape[-2]
        if self.pos == "alibi":  # a distance penalty added to the scores, merged with the mask
            bias = self._alibi(t, s, positions, k_positions, x.device).to(q.dtype)  # (H, T, S)
            if is_causal:
                mask, is_causal = causal_mask(t, s, device=x.device), False
            if mask is None:
                mask = bias
            elif mask.dtype == torch.bool:
                mask = torch.where(mask, bias, torch.tensor(float("-inf"), dtype=bias.dtype, device=bias.device))
            else:
                mask = bias + mask
        if self.n_kv_head != self.n_head:
            # Each K/V head serves a group of consecutive query heads: copy it once per query head.
            group = self.n_head // self.n_kv_head
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        p = self.dropout if self.training else 0.0
        if need_weights:
            y, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p, is_causal=is_causal)
        else:
            # a cache always brings an explicit mask, which only the "mt" and "sdpa" backends accept
            backend = self.backend if cache is None or self.backend == "mt" else "sdpa"
            y = ATTENTION_BACKENDS[backend](q, k, v, mask=mask, dropout_p=p, is_causal=is_causal)
        y = self.o_proj(merge_heads(y))  # concatenate the heads, then W_O
        return (y, weights) if need_weights else y

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_head={self.n_head}, n_kv_head={self.n_kv_head}, pos={self.pos}, "
            f"backend={self.backend!r}"
        )
