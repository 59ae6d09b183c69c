"""Positional information: how a transformer learns the order of its tokens (chapter 7 derives each scheme).

Self-attention without positions is permutation-equivariant: shuffle the tokens and its outputs are
shuffled the same way. Four ways to tell it where each token is:

* ``sinusoidal_encoding``: fixed sin/cos waves *added* to the token embeddings (Vaswani et al., 2017).
* ``LearnedPositionalEmbedding``: one trained vector per position, also added (BERT, GPT-2).
* ``apply_rope``: rotary embeddings; queries and keys are *rotated* by an angle proportional to their
  position, so q_m . k_n depends on m - n only (Su et al., RoFormer).
* ``alibi_bias``: no embedding at all; a penalty linear in the distance is *added to the attention
  scores*, with a different slope per head (Press et al., ALiBi).

All four use the same geometric ladder of frequencies or slopes, so that some components vary fast
(neighbours differ) and others slowly (far-apart positions differ).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def _frequencies(n: int, d: int, base: float) -> torch.Tensor:
    """omega_i = base^(-2i/d) for i = 0 .. n-1, in float64: (n,)."""
    if not base > 0:
        raise ValueError(f"base must be positive; got {base}")
    return base ** (-torch.arange(0, 2 * n, 2, dtype=torch.float64) / d)


def sinusoidal_encoding(
    n_positions: int,
    d_model: int,
    base: float = 10000.0,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The sinusoidal position table of Vaswani et al.: (T, C) with T = n_positions, C = d_model.

        PE[p, 2i]   = sin(p * omega_i)
        PE[p, 2i+1] = cos(p * omega_i),     omega_i = base^(-2i / d_model)

    Row p encodes position p (starting at 0). Each (sin, cos) column pair is a point on the unit circle
    turning at its own speed omega_i, from 1 radian per position (i = 0) down to about 1/base. An odd
    ``d_model`` keeps the sine of the last pair and drops its cosine. The angles are computed in float64
    so that large positions stay accurate, then cast to ``dtype`` (default: torch's default dtype).
    """
    if n_positions < 0 or d_model <= 0:
        raise ValueError(f"need n_positions >= 0 and d_model > 0; got {n_positions} and {d_model}")
    omega = _frequencies((d_model + 1) // 2, d_model, base)  # one frequency per column pair
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * omega[None, :]  # (T, ceil(C/2))
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # interleave: sin, cos, sin, cos, ...
    return pe[:, :d_model].to(dtype=dtype or torch.get_default_dtype(), device=device)


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (BERT, GPT-2): (B, T) or T -> (T, C), positions 0 .. T-1.

    The table has ``max_positions`` rows and nothing beyond them: a sequence longer than that has no
    position vector, so it is refused with a ``ValueError`` rather than silently wrapped or clipped.
    The result broadcasts against token embeddings (B, T, C).
    """

    def __init__(self, max_positions: int, d_model: int, init_std: float = 0.02):
        super().__init__()
        if max_positions <= 0 or d_model <= 0:
            raise ValueError(f"need max_positions > 0 and d_model > 0; got {max_positions} and {d_model}")
        self.max_positions, self.d_model = max_positions, d_model
        self.weight = nn.Parameter(torch.empty(max_positions, d_model))
        nn.init.normal_(self.weight, std=init_std)  # GPT-2's initialisation

    def forward(self, x: torch.Tensor | int) -> torch.Tensor:
        """Position vectors for a length T taken from ``x``: an int T, or a tensor (B, T) / (B, T, C)."""
        if isinstance(x, torch.Tensor):
            if x.dim() not in (2, 3):
                raise ValueError(f"expected token ids (B, T) or embeddings (B, T, C); got shape {tuple(x.shape)}")
            t = x.shape[1]
        else:
            t = int(x)
        if t < 0:
            raise ValueError(f"the sequence length must be >= 0; got {t}")
        if t > self.max_positions:
            raise ValueError(
                f"sequence length {t} exceeds max_positions={self.max_positions}: learned positional embeddings "
                f"have no vector for positions {self.max_positions} and beyond (train with a longer table, or "
                f"use sinusoidal, RoPE or ALiBi positions)"
            )
        return self.weight[:t]

    def extra_repr(self) -> str:
        return f"max_positions={self.max_positions}, d_model={self.d_model}"


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """RoPE's rotation speeds theta_i = base^(-2i / D) for the D/2 feature pairs: (D/2,) float32.

    The same ladder as the sinusoidal encoding's omega_i with d_model replaced by the head size D.
    """
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of features: head_dim must be positive and even; got {head_dim}")
    return _frequencies(head_dim // 2, head_dim, base).float()


def apply_rope(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding: (..., T, D) -> (..., T, D), applied to queries and keys (not values).

    Feature pair i = (x[..., 2i], x[..., 2i+1]) of the token at position p is rotated by the angle
    p * theta_i, with theta_i = base^(-2i/D)::

        x'[2i]   = x[2i] cos(p theta_i) - x[2i+1] sin(p theta_i)
        x'[2i+1] = x[2i] sin(p theta_i) + x[2i+1] cos(p theta_i)

    This is RoFormer's *interleaved* convention: as a complex number z_i = x[2i] + j x[2i+1], the
    rotation is z_i * exp(j p theta_i). Since R(a)^T R(b) = R(b - a), a rotated query at position m and
    key at n have q'_m . k'_n = q^T R((n - m) theta) k: the score depends on the offset n - m only.

    GPT-NeoX, LLaMA and Hugging Face's ``rotate_half`` pair feature i with feature i + D/2 instead
    ("half-split"). The two conventions differ by a fixed permutation of the D features (interleaved ->
    half-split: even features first, then odd ones): rope_half(P x) = P rope_interleaved(x). A model with
    learned W_Q, W_K can use either, but weights trained with one need their rows permuted for the other.

    ``positions``: None for 0 .. T-1, else integer or float positions of shape (T,) or broadcastable to
    (..., T), e.g. an offset for tokens appended to a KV cache. The angles are computed in float64.
    """
    if x.dim() < 2:
        raise ValueError(f"apply_rope expects (..., T, D); got shape {tuple(x.shape)}")
    t, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"RoPE rotates pairs of features: the last dim D must be even; got D={d}")
    if positions is None:
        positions = torch.arange(t, device=x.device)
    positions = torch.as_tensor(positions, device=x.device)
    if positions.dim() == 0 or positions.shape[-1] != t:
        raise ValueError(f"positions must have T={t} entries on its last dim; got shape {tuple(positions.shape)}")
    theta = _frequencies(d // 2, d, base).to(x.device)
    angles = positions.to(torch.float64)[..., None] * theta  # (..., T, D/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # the two coordinates of each pair
    rotated = torch.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1)
    return rotated.flatten(-2)  # interleave back: pair i -> features 2i, 2i+1


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's per-head slopes m_h: (H,) float32.

    For H a power of 2, the geometric sequence m_h = 2^(-8h/H), h = 1 .. H (8 heads: 1/2, 1/4, ..., 1/256).
    Otherwise, as in the paper's code: the slopes for the largest power of 2 below H, n, followed by
    every other slope of the 2n-head sequence (its 1st, 3rd, 5th, ...) until there are H.
    """
    if n_head <= 0:
        raise ValueError(f"n_head must be positive; got {n_head}")

    def power_of_2(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    n = 2 ** int(math.floor(math.log2(n_head)))
    slopes = power_of_2(n) + power_of_2(2 * n)[0::2][: n_head - n]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(
    n_head: int,
    t_q: int,
    t_k: int | None = None,
    *,
    offset: int = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """ALiBi's additive attention bias: (H, T_q, T_k), bias[h, i, j] = -m_h * (offset + i - j).

    Added to the scores before the softmax, it penalises a key linearly in its distance behind the
    query, more steeply in the heads with larger slopes. Meant for causal attention: combine it with the
    causal mask (future keys get a positive bias that the mask must remove). Query i is at position
    ``offset + i`` and key j at position j; with ``offset = 0`` they are aligned at the top-left like
    ``causal_mask``. A KV cache (chapter 14) sets ``offset`` to the number of tokens already cached, so that
    the T_q new queries sit after them (``t_k`` then defaults to ``offset + t_q``, every key so far).
    The result broadcasts against scores (B, H, T_q, T_k), e.g. as the float ``mask`` of
    ``scaled_dot_product_attention``.
    """
    t_k = offset + t_q if t_k is None else t_k
    if t_q < 0 or t_k < 0:
        raise ValueError(f"sequence lengths must be >= 0; got t_q={t_q}, t_k={t_k}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0 (the number of cached positions); got {offset!r}")
    slopes = alibi_slopes(n_head).to(device)
    i = torch.arange(offset, offset + t_q, device=device, dtype=torch.float32)[:, None]
    j = torch.arange(t_k, device=device, dtype=torch.float32)[None, :]
    return -slopes[:, None, None] * (i - j)
