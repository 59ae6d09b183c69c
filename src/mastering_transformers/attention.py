"""Scaled dot-product attention, the core of the transformer (chapter 2 derives it; chapter 3 the scale).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + mask) V

This is the one implementation later chapters import. It returns the attention weights as well as
the output, because the course looks at them (heat maps, bertviz, head analysis).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
