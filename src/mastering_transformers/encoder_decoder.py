"""Encoders, decoders and cross-attention: the three shapes of the transformer (chapter 8 derives them).

    encoder          bidirectional self-attention: every token sees every real token     ids (B, S) -> (B, S, C)
    decoder block    causal self-attention, then cross-attention (queries from the decoder,
                     keys and values from the encoder), then the MLP; Pre-LN              (B, T, C) -> (B, T, C)
    encoder-decoder  an encoder and a stack of decoder blocks (Vaswani et al., 2017)      -> logits (B, T, V)

An encoder classifier reads a whole sequence and pools the encoder's states into one vector before a linear
head. Three pooling heads are offered: "first" prepends a learned [CLS] token and reads its state (BERT),
"mean" averages the states of the real tokens, "attention" lets one learned query attend over them.
Every pooling head ignores padding, so a padded batch gives each sequence the same vector as on its own.

The pieces are the course's own: ``mt.MultiHeadAttention`` (its ``kv`` argument is cross-attention),
``mt.Block`` with ``is_causal=False`` as the encoder block, ``mt.MLP``, ``mt.LayerNorm``, ``mt.padding_mask``
and the positions of chapter 7. ``reversal_batch`` is chapter 1's synthetic seq2seq task (reverse a string of
random digits), moved here so that chapter 8 trains on exactly the same data.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .attention import MultiHeadAttention, padding_mask
from .block import Block
from .mlp import MLP
from .norms import LayerNorm
from .positional import LearnedPositionalEmbedding, sinusoidal_encoding

POOLS = ("first", "mean", "attention")
POSITIONS = ("sinusoidal", "learned")

# Chapter 1's reversal task: digits 0-9 and a start token.
REVERSAL_BOS = 10
REVERSAL_VOCAB = 11


def reversal_batch(
    n: int, length: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chapter 1's task, reverse random digits: -> source (n, S), decoder input (n, S), target (n, S), S = length.

    The target is the source reversed; the decoder input is the target shifted right by one, behind the start
    token ``REVERSAL_BOS`` (teacher forcing). The same generator state gives the same batch as in chapter 1.
    """
    if n < 1 or length < 1:
        raise ValueError(f"need n >= 1 and length >= 1; got n={n}, length={length}")
    src = torch.randint(0, 10, (n, length), generator=generator)
    tgt = src.flip(1)
    tgt_in = torch.cat([torch.full((n, 1), REVERSAL_BOS), tgt[:, :-1]], dim=1)
    return src, tgt_in, tgt


# ---------------------------------------------------------------------------------------------------
# Checks shared by the public entry points
# ---------------------------------------------------------------------------------------------------


def _check_ids(name: str, idx: torch.Tensor, vocab_size: int) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"{name} must be token ids of shape (B, T); got {shape}")
    if idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must hold integer token ids; got dtype {idx.dtype}")
    if idx.shape[1] == 0:
        raise ValueError(f"{name} must have at least one token; got shape {tuple(idx.shape)}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab_size):
        raise ValueError(
            f"{name} has token ids outside [0, {vocab_size}): min {int(idx.min())}, max {int(idx.max())}"
        )


def _check_lengths(lengths: torch.Tensor | None, b: int, t: int) -> None:
    if lengths is None:
        return
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (b,):
        shape = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise ValueError(f"lengths must have shape (B,) = ({b},); got {shape}")
    if int(lengths.min()) < 1 or int(lengths.max()) > t:
        raise ValueError(f"lengths must lie in [1, T={t}] (every sequence needs a real token); got {lengths.tolist()}")


def _check_states(name: str, x: torch.Tensor, d_model: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != d_model:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape (B, T, d_model={d_model}); got {shape}")


# ---------------------------------------------------------------------------------------------------
# Embeddings with positions
# ---------------------------------------------------------------------------------------------------


class TokenPositionEmbedding(nn.Module):
    """Token ids (B, T) -> token embedding + position vector (B, T, C).

    ``positions`` is "sinusoidal" (fixed, any length) or "learned" (a table of ``max_positions`` rows).
    """

    def __init__(self, vocab_size: int, d_model: int, positions: str = "sinusoidal", max_positions: int | None = None):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}; got {positions!r}")
        if vocab_size < 1 or d_model < 1:
            raise ValueError(f"need vocab_size >= 1 and d_model >= 1; got {vocab_size} and {d_model}")
        if positions == "learned" and max_positions is None:
            raise ValueError("learned positions need max_positions (the longest sequence the table covers)")
        self.vocab_size, self.d_model, self.positions = vocab_size, d_model, positions
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = LearnedPositionalEmbedding(max_positions, d_model) if positions == "learned" else None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx)
        if self.pos is None:
            return x + sinusoidal_encoding(idx.shape[1], self.d_model, dtype=x.dtype, device=x.device)
        return x + self.pos(idx)


# ---------------------------------------------------------------------------------------------------
# The encoder and its pooling heads
# ---------------------------------------------------------------------------------------------------


class TransformerEncoder(nn.Module):
    """Bidirectional encoder: ids (B, S), lengths (B,) or None -> states (B, S, C).

    Embedding + positions, ``n_layer`` Pre-LN ``mt.Block``s with ``is_causal=False`` and a final LayerNorm.
    With ``lengths`` the padding after each sequence is masked out as a key (``mt.padding_mask``), so the
    states of the real tokens do not depend on it. Padding positions still get states (they attend to the real
    tokens); whoever reads the states must skip them.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        n_head: int = 4,
        n_layer: int = 2,
        d_ff: int | None = None,
        positions: str = "sinusoidal",
        max_positions: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_layer < 1:
            raise ValueError(f"n_layer must be >= 1; got {n_layer}")
        self.vocab_size, self.d_model = vocab_size, d_model
        self.embed = TokenPositionEmbedding(vocab_size, d_model, positions, max_positions)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_head, d_ff, dropout=dropout) for _ in range(n_layer))
        self.ln_f = LayerNorm(d_model)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        _check_ids("idx", idx, self.vocab_size)
        _check_lengths(lengths, idx.shape[0], idx.shape[1])
        keep = None if lengths is None else padding_mask(lengths.to(idx.device), idx.shape[1])  # (B, 1, 1, S)
        x = self.drop(self.embed(idx))
        for block in self.blocks:
            x = block(x, mask=keep, is_causal=False)  # every token may attend to every real token
        return self.ln_f(x)


def mean_pool(states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the real tokens' states: (B, S, C), lengths (B,) or None -> (B, C).

    Padding states are multiplied by 0 and the sum is divided by the true length, not by S.
    """
    if states.dim() != 3:
        raise ValueError(f"states must have shape (B, S, C); got {tuple(states.shape)}")
    b, s, _ = states.shape
    _check_lengths(lengths, b, s)
    if lengths is None:
        return states.mean(dim=1)
    keep = (torch.arange(s, device=states.device)[None, :] < lengths.to(states.device)[:, None]).to(states.dtype)
    return (states * keep[:, :, None]).sum(dim=1) / lengths.to(states.dtype).to(states.device)[:, None]


class AttentionPool(nn.Module):
    """One learned query attends over the states: (B, S, C), lengths (B,) or None -> (B, C).

    The query is a trained vector, the keys and values are the states (``mt.MultiHeadAttention`` with its
    ``kv`` argument), and padding keys are masked. With ``need_weights=True`` also returns the weights
    (B, H, S). The query starts near zero, so the weights start near uniform: a mean pool of projected values.
    """

    def __init__(self, d_model: int, n_head: int = 1):
        super().__init__()
        self.d_model = d_model
        self.query = nn.Parameter(0.02 * torch.randn(1, 1, d_model))
        self.attn = MultiHeadAttention(d_model, n_head)

    def forward(
        self, states: torch.Tensor, lengths: torch.Tensor | None = None, need_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        _check_states("states", states, self.d_model)
        b, s, _ = states.shape
        _check_lengths(lengths, b, s)
        keep = None if lengths is None else padding_mask(lengths.to(states.device), s)
        out = self.attn(self.query.expand(b, 1, -1), kv=states, mask=keep, need_weights=need_weights)
        if need_weights:
            y, w = out
            return y[:, 0], w[:, :, 0]  # (B, C), (B, H, S)
        return out[:, 0]


class EncoderClassifier(nn.Module):
    """A transformer encoder with a pooling head and a linear classifier: ids (B, S), lengths -> logits (B, K).

    ``pool`` is "first" (a learned [CLS] token is prepended and its final state read, as in BERT), "mean"
    (``mean_pool`` over the real tokens) or "attention" (``AttentionPool``). ``features`` returns the pooled
    vector (B, C) before the linear layer.
    """

    def __init__(
        self,
        vocab_size: int,
        n_classes: int,
        pool: str = "mean",
        d_model: int = 64,
        n_head: int = 4,
        n_layer: int = 2,
        d_ff: int | None = None,
        positions: str = "sinusoidal",
        max_positions: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}; got {pool!r}")
        if n_classes < 2:
            raise ValueError(f"a classifier needs n_classes >= 2; got {n_classes}")
        self.vocab_size, self.n_classes, self.pool = vocab_size, n_classes, pool
        extra = 1 if pool == "first" else 0  # the [CLS] token gets the id vocab_size and one more position
        self.cls_id = vocab_size if pool == "first" else None
        self.encoder = TransformerEncoder(
            vocab_size + extra, d_model, n_head, n_layer, d_ff, positions,
            None if max_positions is None else max_positions + extra, dropout,
        )
        self.attn_pool = AttentionPool(d_model, n_head) if pool == "attention" else None
        self.head = nn.Linear(d_model, n_classes)

    def features(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled vector (B, C) of token ids (B, S) with true lengths (B,) (None: no padding)."""
        _check_ids("idx", idx, self.vocab_size)
        _check_lengths(lengths, idx.shape[0], idx.shape[1])
        if self.pool == "first":
            cls = torch.full((idx.shape[0], 1), self.cls_id, dtype=idx.dtype, device=idx.device)
            idx = torch.cat([cls, idx], dim=1)
            lengths = None if lengths is None else lengths + 1
        states = self.encoder(idx, lengths)
        if self.pool == "first":
            return states[:, 0]
        if self.pool == "mean":
            return mean_pool(states, lengths)
        return self.attn_pool(states, lengths)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(idx, lengths))


# ---------------------------------------------------------------------------------------------------
# The decoder block and the encoder-decoder
# ---------------------------------------------------------------------------------------------------


class DecoderBlock(nn.Module):
    """Pre-LN decoder block: x (B, T, C), memory (B, S, C) -> (B, T, C).

        x = x + self_attn(norm_1(x))                     causal: position t sees positions 0 .. t (itself included)
        x = x + cross_attn(norm_2(x), kv=memory)          queries from the decoder, keys and values from the encoder
        x = x + mlp(norm_3(x))

    ``memory_mask`` (bool, True = may attend, or additive float), broadcastable to (B, H, T, S), hides encoder
    positions, e.g. ``mt.padding_mask(src_lengths, S)``. With ``need_weights=True`` returns
    (x, cross-attention weights (B, H, T, S)).
    """

    def __init__(self, d_model: int, n_head: int, d_ff: int | None = None, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.d_model = d_model
        self.norm_1 = LayerNorm(d_model, bias=bias)
        self.self_attn = MultiHeadAttention(d_model, n_head, bias=bias, dropout=dropout)
        self.norm_2 = LayerNorm(d_model, bias=bias)
        self.cross_attn = MultiHeadAttention(d_model, n_head, bias=bias, dropout=dropout)
        self.norm_3 = LayerNorm(d_model, bias=bias)
        self.mlp = MLP(d_model, d_ff, activation="gelu", bias=bias, dropout=dropout)
        self.drop_1, self.drop_2 = nn.Dropout(dropout), nn.Dropout(dropout)  # on the attention outputs

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        _check_states("x", x, self.d_model)
        _check_states("memory", memory, self.d_model)
        if memory.shape[0] != x.shape[0]:
            raise ValueError(
                f"x and memory must have the same batch size B; got {x.shape[0]} and {memory.shape[0]}"
            )
        x = x + self.drop_1(self.self_attn(self.norm_1(x), is_causal=True))
        cross = self.cross_attn(self.norm_2(x), kv=memory, mask=memory_mask, need_weights=need_weights)
        cross, weights = cross if need_weights else (cross, None)
        x = x + self.drop_2(cross)
        x = x + self.mlp(self.norm_3(x))
        return (x, weights) if need_weights else x


class EncoderDecoder(nn.Module):
    """A Pre-LN encoder-decoder transformer over token ids (the shape of Vaswani et al., 2017).

    forward(src (B, S), tgt_in (B, T), src_lengths (B,) or None) -> logits (B, T, V_tgt), weights  (teacher forcing)
    generate(src (B, S), length, bos) -> tokens (B, length), weights  (greedy)

    ``weights`` is None unless ``need_weights=True``; then it holds every decoder layer's cross-attention
    weights, (B, n_dec_layer, H, T, S). The calls mirror ``mt.Seq2Seq`` (chapter 1), so the two compare
    side by side. The source and the target have separate embeddings; ``tgt_vocab_size`` defaults to
    ``vocab_size``.
    """

    def __init__(
        self,
        vocab_size: int,
        tgt_vocab_size: int | None = None,
        d_model: int = 64,
        n_head: int = 4,
        n_enc_layer: int = 2,
        n_dec_layer: int = 2,
        d_ff: int | None = None,
        positions: str = "sinusoidal",
        max_positions: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_dec_layer < 1:
            raise ValueError(f"n_dec_layer must be >= 1; got {n_dec_layer}")
        tgt_vocab_size = vocab_size if tgt_vocab_size is None else tgt_vocab_size
        self.tgt_vocab_size, self.d_model = tgt_vocab_size, d_model
        self.encoder = TransformerEncoder(vocab_size, d_model, n_head, n_enc_layer, d_ff, positions, max_positions,
                                          dropout)
        self.tgt_embed = TokenPositionEmbedding(tgt_vocab_size, d_model, positions, max_positions)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(DecoderBlock(d_model, n_head, d_ff, dropout) for _ in range(n_dec_layer))
        self.ln_f = LayerNorm(d_model)
        self.head = nn.Linear(d_model, tgt_vocab_size)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """src ids (B, S) -> memory (B, S, C), the encoder's states."""
        _check_ids("src", src, self.encoder.vocab_size)
        return self.encoder(src, src_lengths)

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tgt_in ids (B, T), memory (B, S, C) -> logits (B, T, V_tgt), cross weights (B, L, H, T, S) or None."""
        _check_ids("tgt_in", tgt_in, self.tgt_vocab_size)
        _check_states("memory", memory, self.d_model)
        if memory.shape[0] != tgt_in.shape[0]:
            raise ValueError(
                f"tgt_in and the source must have the same batch size B; got {tgt_in.shape[0]} and {memory.shape[0]}"
            )
        _check_lengths(src_lengths, memory.shape[0], memory.shape[1])
        keep = None if src_lengths is None else padding_mask(src_lengths.to(memory.device), memory.shape[1])
        x = self.drop(self.tgt_embed(tgt_in))
        weights = []
        for block in self.blocks:
            if need_weights:
                x, w = block(x, memory, memory_mask=keep, need_weights=True)
                weights.append(w)
            else:
                x = block(x, memory, memory_mask=keep)
        logits = self.head(self.ln_f(x))
        return logits, (torch.stack(weights, dim=1) if need_weights else None)

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_lengths: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.decode(tgt_in, self.encode(src, src_lengths), src_lengths, need_weights)

    @torch.no_grad()
    def generate(
        self,
        src: torch.Tensor,
        length: int,
        bos: int,
        src_lengths: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Greedy decoding: src (B, S) -> tokens (B, length), cross weights (B, L, H, length, S) or None.

        The source is encoded once. Each step runs the decoder over the whole prefix (no KV cache: chapter 14
        adds one) and appends the most likely next token. Runs in eval mode (no dropout), so it is deterministic.
        """
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int; got {length!r}")
        if not 0 <= bos < self.tgt_vocab_size:
            raise ValueError(f"bos must be a target token id in [0, {self.tgt_vocab_size}); got {bos}")
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(src, src_lengths)
            y = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
            for _ in range(length):
                logits, _ = self.decode(y, memory, src_lengths)
                y = torch.cat([y, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
            weights = None
            if need_weights:  # causal: the weights of the last full pass are those of every step
                _, weights = self.decode(y[:, :-1], memory, src_lengths, need_weights=True)
        finally:
            self.train(was_training)
        return y[:, 1:], weights
