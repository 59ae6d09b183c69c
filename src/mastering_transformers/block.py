"""The transformer block: how attention, the MLP, the residual stream and normalisation compose (chapter 5).

    Pre-LN  (GPT-2 and later):        x = x + attn(norm_1(x));   x = x + mlp(norm_2(x))
    Post-LN (Vaswani et al., 2017):   x = norm_1(x + attn(x));   x = norm_2(x + mlp(x))

In Pre-LN the residual stream x is never normalised: each sublayer reads a normalised copy and adds
its output back, so the identity path from the block's input to its output is untouched. In Post-LN
the normalisation sits on that path, after every addition. Chapter 5 measures what this changes for
the gradients at initialisation and for training stability.

Chapter 10 builds the GPT from this block and adds options, all keyword-only with defaults that keep
chapter 5's block: ``mlp`` ("gelu", "gelu_tanh", "relu" or "swiglu"), ``pos`` (None, "rope", "alibi":
position information inside attention) and ``backend`` (the attention implementation).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .attention import MultiHeadAttention, causal_mask
from .mlp import MLP, SwiGLU
from .norms import LayerNorm, RMSNorm

_NORMS = ("layer", "rms")
_MLPS = ("gelu", "gelu_tanh", "relu", "swiglu")


def _make_norm(kind: str, d_model: int, bias: bool) -> nn.Module:
    return LayerNorm(d_model, bias=bias) if kind == "layer" else RMSNorm(d_model)


class Block(nn.Module):
    """One transformer block (B, T, C) -> (B, T, C): self-attention, then the MLP, each with a residual.

    ``norm_first=True`` is Pre-LN, ``False`` Post-LN. ``norm`` is "layer" (LayerNorm) or "rms" (RMSNorm).
    ``d_ff`` defaults to 4 C (``mt.MLP``'s default); ``n_kv_head`` < ``n_head`` gives grouped-query
    attention. ``bias`` applies to every linear layer and to the LayerNorms.

    Keyword-only (chapter 10): ``mlp`` is the feed-forward network, "gelu" (``mt.MLP`` with exact GELU, the
    default), "gelu_tanh", "relu", or "swiglu" (``mt.SwiGLU``, d_ff defaulting to about 8 C / 3);
    ``pos`` and ``rope_base`` are ``mt.MultiHeadAttention``'s positional hook ("rope", "alibi" or None);
    ``backend`` its attention implementation ("sdpa" or "mt", see ``mt.attention.ATTENTION_BACKENDS``).
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        d_ff: int | None = None,
        norm_first: bool = True,
        norm: str = "layer",
        dropout: float = 0.0,
        bias: bool = True,
        n_kv_head: int | None = None,
        *,
        mlp: str = "gelu",
        pos: str | None = None,
        rope_base: float = 10000.0,
        backend: str = "sdpa",
    ):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}; got {norm!r}")
        if mlp not in _MLPS:
            raise ValueError(f"mlp must be one of {_MLPS}; got {mlp!r}")
        self.norm_first = norm_first
        self.norm_1 = _make_norm(norm, d_model, bias)
        self.attn = MultiHeadAttention(
            d_model, n_head, n_kv_head=n_kv_head, bias=bias, dropout=dropout, pos=pos, rope_base=rope_base,
            backend=backend,
        )
        self.norm_2 = _make_norm(norm, d_model, bias)
        if mlp == "swiglu":
            self.mlp = SwiGLU(d_model, d_ff, bias=bias, dropout=dropout)
        else:
            self.mlp = MLP(d_model, d_ff, activation=mlp, bias=bias, dropout=dropout)
        # mt.MLP ends with its own dropout; attention only drops weights, so its output gets one here.
        self.attn_dropout = nn.Dropout(dropout)

    def _attend(
        self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is not None and is_causal:  # a padding (or other) mask on top of the causal one
            t = x.shape[1]
            future = ~causal_mask(t, device=x.device)
            if mask.dtype == torch.bool:
                mask = mask & ~future
            else:
                mask = mask + torch.zeros(t, t, dtype=mask.dtype, device=x.device).masked_fill(future, float("-inf"))
            is_causal = False
        return self.attn_dropout(self.attn(x, mask=mask, is_causal=is_causal, positions=positions))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = True,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C).

        ``is_causal=True`` (the default, a decoder) forbids attending to later positions; ``False`` gives a
        bidirectional (encoder) block. ``mask`` (bool, True = may attend, or an additive float mask,
        broadcastable to (B, H, T, T)), e.g. ``mt.padding_mask``, is applied as well. ``positions`` (T,) are
        the token positions used by a RoPE or ALiBi block (default 0 .. T-1); other blocks ignore them.
        """
        if x.dim() != 3:
            raise ValueError(f"Block expects x of shape (B, T, C); got {tuple(x.shape)}")
        if self.norm_first:
            x = x + self._attend(self.norm_1(x), mask, is_causal, positions)
            x = x + self.mlp(self.norm_2(x))
        else:
            x = self.norm_1(x + self._attend(x, mask, is_causal, positions))
            x = self.norm_2(x + self.mlp(x))
        return x
