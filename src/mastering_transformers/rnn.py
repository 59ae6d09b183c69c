"""Recurrent networks and Bahdanau attention: what came before the transformer (chapter 1 derives them).

    RNN:   h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
    LSTM:  i, f, g, o = split(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)      (torch's gate order)
           c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g),   h_t = sigmoid(o) * tanh(c_t)
    Additive (Bahdanau) attention:  score(s, h_j) = v^T tanh(W_s s + W_h h_j)

The cells keep torch's parameter names and shapes (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``),
so weights copy one-to-one from ``torch.nn.RNN`` / ``torch.nn.LSTM`` (layer 0) and the tests compare the two.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _check_step(x: torch.Tensor, h: torch.Tensor, input_size: int, hidden_size: int) -> None:
    if x.dim() != 2 or x.shape[-1] != input_size:
        raise ValueError(f"x must be (B, input_size={input_size}); got shape {tuple(x.shape)}")
    if h.shape != (x.shape[0], hidden_size):
        raise ValueError(
            f"the state must be (B={x.shape[0]}, hidden_size={hidden_size}) to match x; got shape {tuple(h.shape)}"
        )


class _Cell(nn.Module):
    """Shared parameters of a recurrent cell with ``gates`` blocks of size ``hidden_size``."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be positive; got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        n = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(n, input_size))
        self.weight_hh = nn.Parameter(torch.empty(n, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(n)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(n)) if bias else None
        bound = 1.0 / math.sqrt(hidden_size)  # torch's default: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def preactivation(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x W_ih^T + b_ih + h W_hh^T + b_hh: (B, C), (B, H) -> (B, gates * H)."""
        return F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)


class RNNCell(_Cell):
    """One step of the Elman (tanh) RNN: x (B, C), h (B, H) -> h' (B, H)."""

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        _check_step(x, h, self.input_size, self.hidden_size)
        return torch.tanh(self.preactivation(x, h))


class LSTMCell(_Cell):
    """One LSTM step: x (B, C), state (h, c) each (B, H) -> (h', c'). Gates in torch's order i, f, g, o."""

    gates = 4

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        _check_step(x, h, self.input_size, self.hidden_size)
        if c.shape != h.shape:
            raise ValueError(f"h and c must have the same shape; got {tuple(h.shape)} and {tuple(c.shape)}")
        i, f, g, o = self.preactivation(x, h).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # forget some, write some
        h = torch.sigmoid(o) * torch.tanh(c)  # expose some
        return h, c


def _check_sequence(x: torch.Tensor, input_size: int) -> None:
    if x.dim() != 3 or x.shape[-1] != input_size:
        raise ValueError(f"x must be (B, T, input_size={input_size}); got shape {tuple(x.shape)}")


class RNN(nn.Module):
    """A tanh RNN unrolled over time: x (B, T, C), h0 (B, H) or None -> outputs (B, T, H), h_T (B, H).

    The loop is the point: step t needs h_{t-1}, so the T steps run one after another.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.cell = RNNCell(input_size, hidden_size, bias)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_sequence(x, self.cell.input_size)
        h = x.new_zeros(x.shape[0], self.cell.hidden_size) if h0 is None else h0
        outputs = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h


class LSTM(nn.Module):
    """An LSTM unrolled over time: x (B, T, C), (h0, c0) or None -> outputs (B, T, H), (h_T, c_T)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.cell = LSTMCell(input_size, hidden_size, bias)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        _check_sequence(x, self.cell.input_size)
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.cell.hidden_size)
            state = (zeros, zeros)
        outputs = []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state


class AdditiveAttention(nn.Module):
    """Bahdanau attention: a small network scores each key against the query.

    score(s, h_j) = v^T tanh(W_s s + W_h h_j),  weights = softmax_j(score),  context = sum_j weights_j h_j.
    query s (B, D_q), keys/values h (B, T, D_k), mask (B, T) bool (True = keep) or None
    -> context (B, D_k), weights (B, T).
    """

    def __init__(self, query_size: int, key_size: int, attn_size: int):
        super().__init__()
        self.W_s = nn.Linear(query_size, attn_size, bias=False)
        self.W_h = nn.Linear(key_size, attn_size, bias=False)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def scores(self, s: torch.Tensor, h: torch.Tensor, h_proj: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised scores: (B, D_q), (B, T, D_k) -> (B, T).

        ``h_proj`` = ``self.W_h(h)`` may be passed in: it does not depend on the query, so a decoder that
        queries the same keys at every step computes it once.
        """
        if s.dim() != 2 or s.shape[-1] != self.W_s.in_features:
            raise ValueError(f"query must be (B, query_size={self.W_s.in_features}); got shape {tuple(s.shape)}")
        if h.dim() != 3 or h.shape[0] != s.shape[0] or h.shape[-1] != self.W_h.in_features:
            raise ValueError(
                f"keys must be (B={s.shape[0]}, T, key_size={self.W_h.in_features}); got shape {tuple(h.shape)}"
            )
        h_proj = self.W_h(h) if h_proj is None else h_proj
        return self.v(torch.tanh(self.W_s(s)[:, None, :] + h_proj)).squeeze(-1)

    def forward(
        self, s: torch.Tensor, h: torch.Tensor, mask: torch.Tensor | None = None, h_proj: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.scores(s, h, h_proj)
        if mask is not None:
            if mask.shape != scores.shape:
                raise ValueError(f"mask must be (B, T) = {tuple(scores.shape)}; got {tuple(mask.shape)}")
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = (weights[:, :, None] * h).sum(dim=1)
        return context, weights


class Seq2Seq(nn.Module):
    """An LSTM encoder-decoder over token ids, with or without Bahdanau attention (Sutskever 2014, Bahdanau 2015).

    Without attention the decoder sees the source only through the encoder's final state (h_T, c_T): one
    fixed-size vector, whatever the length. With attention it also reads, at every step, a context vector:
    an ``AdditiveAttention`` average of all encoder states, queried by its previous state.
    The encoder uses torch's fused ``nn.LSTM`` (the same function as ``LSTM``, only faster); the decoder is a loop.

    forward(src (B, S), tgt_in (B, T)) -> logits (B, T, vocab), weights (B, T, S) or None  (teacher forcing).
    generate(src (B, S), length, bos) -> tokens (B, length), weights (B, length, S) or None  (greedy).
    """

    def __init__(self, vocab_size: int, emb_size: int = 32, hidden_size: int = 64, attention: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_size)
        self.encoder = nn.LSTM(emb_size, hidden_size, batch_first=True)
        self.attention = AdditiveAttention(hidden_size, hidden_size, hidden_size) if attention else None
        dec_in = emb_size + (hidden_size if attention else 0)
        self.decoder = LSTMCell(dec_in, hidden_size)
        self.out = nn.Linear(hidden_size * (2 if attention else 1), vocab_size)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """src (B, S) -> encoder states (B, S, H), final (h, c) each (B, H)."""
        if src.dim() != 2:
            raise ValueError(f"src must be token ids (B, S); got shape {tuple(src.shape)}")
        states, (h, c) = self.encoder(self.embed(src))
        return states, (h[0], c[0])

    def step(self, y_prev: torch.Tensor, state, enc: torch.Tensor, enc_proj: torch.Tensor | None = None):
        """One decoder step: y_prev (B,) ids -> logits (B, vocab), new state, weights (B, S) or None."""
        x, weights = self.embed(y_prev), None
        if self.attention is not None:  # query: the previous decoder state; keys and values: encoder states
            context, weights = self.attention(state[0], enc, h_proj=enc_proj)
            x = torch.cat([x, context], dim=-1)
        state = self.decoder(x, state)
        features = state[0] if self.attention is None else torch.cat([state[0], context], dim=-1)
        return self.out(features), state, weights

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor):
        enc, state = self.encode(src)
        enc_proj = None if self.attention is None else self.attention.W_h(enc)  # the same at every step
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state, w = self.step(tgt_in[:, t], state, enc, enc_proj)
            logits.append(step_logits)
            weights.append(w)
        return torch.stack(logits, dim=1), (None if self.attention is None else torch.stack(weights, dim=1))

    @torch.no_grad()
    def generate(self, src: torch.Tensor, length: int, bos: int):
        enc, state = self.encode(src)
        enc_proj = None if self.attention is None else self.attention.W_h(enc)
        y = torch.full((src.shape[0],), bos, dtype=torch.long, device=src.device)
        tokens, weights = [], []
        for _ in range(length):
            logits, state, w = self.step(y, state, enc, enc_proj)
            y = logits.argmax(dim=-1)
            tokens.append(y)
            weights.append(w)
        return torch.stack(tokens, dim=1), (None if self.attention is None else torch.stack(weights, dim=1))
