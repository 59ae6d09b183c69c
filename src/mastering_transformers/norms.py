"""Normalisation layers: LayerNorm and RMSNorm (chapter 5 derives both).

Both act on each token on its own, over its features (the last dimension), never over the batch or
the sequence:

    LayerNorm(x) = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias     (biased variance, as torch)
    RMSNorm(x)   = x / sqrt(mean(x^2) + eps) * weight

LayerNorm is unchanged when a token is shifted (x + c) or scaled (a x, a > 0); RMSNorm only when it
is scaled. The formulas are written out rather than calling ``F.layer_norm`` so that the tests can
compare them with torch's fused kernels as an independent reference.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _check_features(x: torch.Tensor, d_model: int, name: str) -> None:
    if x.dim() == 0 or x.shape[-1] != d_model:
        raise ValueError(
            f"{name} normalises over the last dim, which must have size d_model={d_model}; "
            f"got input of shape {tuple(x.shape)}"
        )


def _check_args(d_model: int, eps: float) -> None:
    if not isinstance(d_model, int) or d_model <= 0:
        raise ValueError(f"d_model must be a positive int; got {d_model!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0; got {eps}")


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    # Statistics of fp16/bf16 activations are taken in float32 (a sum of squares loses too much in 16 bits).
    return torch.promote_types(x.dtype, torch.float32)


class LayerNorm(nn.Module):
    """(..., C) -> (..., C): centre and scale each token over its C features, then ``weight`` and ``bias``.

    ``bias=False`` drops the additive bias (as in nanoGPT's ``bias=False`` option).
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        _check_args(d_model, eps)
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.d_model, "LayerNorm")
        h = x.to(_compute_dtype(x))
        mean = h.mean(dim=-1, keepdim=True)
        var = (h - mean).pow(2).mean(dim=-1, keepdim=True)  # biased: divide by C, not C - 1
        h = (h - mean) * torch.rsqrt(var + self.eps)  # eps keeps a constant token finite (it maps to 0)
        h = h * self.weight if self.bias is None else h * self.weight + self.bias
        return h.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    """(..., C) -> (..., C): divide each token by the root mean square of its C features, then ``weight``.

    No centring and no bias: one statistic per token instead of two (Zhang and Sennrich, 2019).
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        _check_args(d_model, eps)
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.d_model, "RMSNorm")
        h = x.to(_compute_dtype(x))
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (h * self.weight).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"
