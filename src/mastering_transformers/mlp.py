"""The position-wise feed-forward network of a transformer block (chapter 6 derives it).

    MLP(x)    = dropout( act(x W_in + b_in) W_out + b_out )            act = ReLU or GELU
    SwiGLU(x) = dropout( (silu(x W_gate) * (x W_up)) W_down )

Both act on the last dimension only, so every position (token) is transformed independently by
the same weights: attention mixes information *across* positions, the feed-forward network
transforms each position on its own. The nonlinearity in the middle is what stops the two
matrices from collapsing into one (chapter 6 shows the collapse).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

_ACTIVATIONS = ("relu", "gelu", "gelu_tanh")


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU(x) = x * Phi(x), Phi the standard normal CDF; any shape -> same shape.

    ``approximate="none"`` uses the exact erf form, ``"tanh"`` the tanh approximation of
    Hendrycks & Gimpel (used by GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    """
    if approximate == "none":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if approximate == "tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(f"approximate must be 'none' or 'tanh'; got {approximate!r}")


def swiglu_hidden_size(d_model: int, multiple_of: int = 8) -> int:
    """Hidden size of a SwiGLU that has (about) the parameters of a 4x MLP.

    A bias-free MLP has 2 * d_model * 4 d_model = 8 d_model^2 weights; SwiGLU has three matrices,
    3 * d_model * d_ff, so the match is d_ff = 8 d_model / 3. We round *up* to a multiple of
    ``multiple_of`` (hardware-friendly shapes, as in LLaMA), which gives exactly 8 d_model / 3 when
    d_model is a multiple of 3 and never fewer parameters than the MLP otherwise.
    """
    if d_model <= 0 or multiple_of <= 0:
        raise ValueError(f"d_model and multiple_of must be positive; got {d_model}, {multiple_of}")
    exact = -(-8 * d_model // 3)  # ceil(8 d_model / 3) in integers
    return multiple_of * -(-exact // multiple_of)


def _check_sizes(d_model: int, d_ff: int, dropout: float) -> None:
    if d_model <= 0 or d_ff <= 0:
        raise ValueError(f"d_model and d_ff must be positive; got d_model={d_model}, d_ff={d_ff}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout}")


class MLP(nn.Module):
    """Position-wise feed-forward network (B, T, C) -> (B, T, C) (any leading dims work).

    Linear(C, d_ff) -> activation -> Linear(d_ff, C) -> dropout, with d_ff = 4 C by default
    (the ratio of the original transformer and GPT-2). ``activation`` is "relu", "gelu" (exact)
    or "gelu_tanh" (GPT-2's approximation).
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int | None = None,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        d_ff = 4 * d_model if d_ff is None else d_ff
        _check_sizes(d_model, d_ff, dropout)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}; got {activation!r}")
        self.d_model, self.d_ff, self.activation = d_model, d_ff, activation
        self.fc_in = nn.Linear(d_model, d_ff, bias=bias)
        self.fc_out = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def act(self, h: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return F.relu(h)
        return gelu(h, approximate="tanh" if self.activation == "gelu_tanh" else "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"expected last dim d_model={self.d_model}; got shape {tuple(x.shape)}")
        return self.dropout(self.fc_out(self.act(self.fc_in(x))))


class SwiGLU(nn.Module):
    """Gated feed-forward network (B, T, C) -> (B, T, C): (silu(x W_gate) * (x W_up)) W_down.

    Shazeer (2020): one branch, passed through SiLU, gates the other elementwise. Three matrices
    instead of two, so the default d_ff = ``swiglu_hidden_size(C)`` (about 8 C / 3) keeps the
    parameter count of a bias-free 4x MLP. No biases by default, as in PaLM and LLaMA.
    """

    def __init__(self, d_model: int, d_ff: int | None = None, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        if d_model <= 0:
            raise ValueError(f"d_model must be positive; got {d_model}")
        d_ff = swiglu_hidden_size(d_model) if d_ff is None else d_ff
        _check_sizes(d_model, d_ff, dropout)
        self.d_model, self.d_ff = d_model, d_ff
        self.w_gate = nn.Linear(d_model, d_ff, bias=bias)
        self.w_up = nn.Linear(d_model, d_ff, bias=bias)
        self.w_down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"expected last dim d_model={self.d_model}; got shape {tuple(x.shape)}")
        return self.dropout(self.w_down(F.silu(self.w_gate(x)) * self.w_up(x)))
