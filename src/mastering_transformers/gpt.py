"""The full decoder-only language model: a GPT built from the course's pieces (chapter 10).

    idx (B, T) -> token embedding (+ positions) -> dropout -> n_layer x Block -> final norm -> lm_head
               -> logits (B, T, V)

Each position's logits score every vocabulary entry as the *next* token; causal attention inside the
blocks means position t sees tokens 0 .. t only, so one forward pass trains T predictions at once.

One ``GPTConfig`` describes both families the course compares:

* GPT-2: ``norm="layer", mlp="gelu", pos="learned", bias=True`` (the defaults);
* Llama-style: ``norm="rms", mlp="swiglu", pos="rope", bias=False, n_kv_head < n_head`` (GQA).

Initialisation follows GPT-2: every linear and embedding weight ~ N(0, 0.02^2), biases 0, and the two
projections that write into the residual stream in each block (attention's W_O and the MLP's output)
~ N(0, (0.02 / sqrt(2 n_layer))^2): the stream receives 2 n_layer such additions, so its variance at
initialisation stays about the same whatever the depth. With ``tie_weights`` the output head reuses the
token embedding matrix (Press and Wolf, 2017), saving V * C parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import ATTENTION_BACKENDS
from .block import Block
from .generate import sample_next
from .mlp import SwiGLU
from .norms import LayerNorm, RMSNorm
from .positional import LearnedPositionalEmbedding, sinusoidal_encoding

NORMS = ("layer", "rms")
MLPS = ("gelu", "swiglu")
POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


@dataclass
class GPTConfig:
    """Every size and architectural choice of a ``GPT``; checked when created.

    ``vocab_size`` V, ``block_size`` (the context length trained on; the largest T for learned positions),
    ``n_layer`` blocks, ``n_head`` query heads of size ``n_embd // n_head``, ``n_kv_head`` key/value heads
    (None: = n_head; fewer: grouped-query attention), ``dropout`` (embeddings, attention weights, residual
    branches), ``bias`` (linear layers and LayerNorms), ``norm`` "layer" | "rms", ``mlp`` "gelu" | "swiglu",
    ``pos`` "learned" | "sinusoidal" | "rope" | "alibi" | "none" (no positional information: the causal mask is
    then the only source of order; chapter 7 compares all five), ``tie_weights`` (head shares the token embedding),
    ``attn_backend`` a name in ``mt.attention.ATTENTION_BACKENDS`` ("sdpa": PyTorch's fused kernel; "mt": the
    course's ``scaled_dot_product_attention``). ``d_ff`` is the MLP's hidden size (None: 4 n_embd for
    "gelu", ``mt.swiglu_hidden_size(n_embd)`` for "swiglu"), ``rope_base`` RoPE's base, ``init_std`` the
    standard deviation of GPT-2's initialisation. ``prenorm`` False builds Post-LN blocks (Vaswani et al.,
    2017; chapter 5): the ablation of chapter 16; the final norm is kept either way.
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    n_kv_head: int | None = None
    dropout: float = 0.0
    bias: bool = True
    norm: str = "layer"
    mlp: str = "gelu"
    pos: str = "learned"
    tie_weights: bool = True
    attn_backend: str = "sdpa"
    d_ff: int | None = None
    rope_base: float = 10000.0
    init_std: float = 0.02
    prenorm: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _positive_int(name, getattr(self, name))
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_head must divide n_embd: each head gets n_embd // n_head features, but n_embd={self.n_embd} "
                f"is not a multiple of n_head={self.n_head}"
            )
        if self.n_kv_head is not None:
            _positive_int("n_kv_head", self.n_kv_head)
            if self.n_head % self.n_kv_head != 0:
                raise ValueError(
                    f"n_kv_head must divide n_head: each key/value head is shared by n_head // n_kv_head query "
                    f"heads, but n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}"
                )
        if self.d_ff is not None:
            _positive_int("d_ff", self.d_ff)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1); got {self.dropout!r}")
        for name in ("bias", "tie_weights", "prenorm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        for name, choices in (("norm", NORMS), ("mlp", MLPS), ("pos", POSITIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}; got {getattr(self, name)!r}")
        if self.attn_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attn_backend must be one of {tuple(ATTENTION_BACKENDS)}; got {self.attn_backend!r}")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"pos='rope' rotates pairs of features: the head size n_embd // n_head = "
                f"{self.n_embd // self.n_head} must be even"
            )
        for name in ("rope_base", "init_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number; got {value!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GPTConfig:
        """A config from a mapping of field names to values; an unknown name is an error that lists the valid ones."""
        if not isinstance(d, Mapping):
            raise TypeError(f"GPTConfig.from_dict expects a mapping; got {type(d).__name__}")
        valid = cls.field_names()
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown GPTConfig field(s) {unknown}; valid fields are: {', '.join(valid)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (``from_dict(c.to_dict()) == c``), e.g. for a checkpoint."""
        return dataclasses.asdict(self)


def _norm(config: GPTConfig) -> nn.Module:
    return LayerNorm(config.n_embd, bias=config.bias) if config.norm == "layer" else RMSNorm(config.n_embd)


def residual_projections(block: Block) -> list[nn.Linear]:
    """The linear layers of a block whose outputs are added to the residual stream: W_O and the MLP's last."""
    out = block.mlp.w_down if isinstance(block.mlp, SwiGLU) else block.mlp.fc_out
    return [block.attn.o_proj, out]


class GPT(nn.Module):
    """Decoder-only transformer language model: idx (B, T) long -> logits (B, T, V) [and the loss].

    ``forward(idx, targets=None)`` returns ``(logits, loss)``; ``loss`` is None without targets, else the
    mean cross-entropy over every position whose target is not -100 (``ignore_index``). With learned
    positions T may not exceed ``block_size`` (a ``ValueError`` says so); sinusoidal, RoPE and ALiBi
    positions are formulas, and "none" has no positions at all, so the forward also accepts longer
    sequences, though the model was only trained on lengths up to ``block_size`` (chapter 7 measures what
    happens beyond). ``generate`` always feeds at most the last ``block_size`` tokens.
    """

    def __init__(self, config: GPTConfig | Mapping[str, Any]):
        super().__init__()
        if isinstance(config, Mapping):
            config = GPTConfig.from_dict(config)
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig (or a dict of its fields); got {type(config).__name__}")
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        self.pos_emb = LearnedPositionalEmbedding(c.block_size, c.n_embd) if c.pos == "learned" else None
        if c.pos == "sinusoidal":
            # Scaled so that each entry has the RMS (init_std) of a fresh token embedding entry: the raw table's
            # entries have RMS 1/sqrt(2), which would drown the tokens at initialisation.
            table = sinusoidal_encoding(c.block_size, c.n_embd) * (c.init_std * math.sqrt(2))
            self.register_buffer("pos_table", table, persistent=False)
        self.drop = nn.Dropout(c.dropout)
        attn_pos = c.pos if c.pos in ("rope", "alibi") else None
        self.blocks = nn.ModuleList(
            Block(
                c.n_embd, c.n_head, d_ff=c.d_ff, norm_first=c.prenorm, norm=c.norm, dropout=c.dropout, bias=c.bias,
                n_kv_head=c.n_kv_head, mlp=c.mlp, pos=attn_pos, rope_base=c.rope_base, backend=c.attn_backend,
            )
            for _ in range(c.n_layer)
        )
        self.norm_f = _norm(c)  # Pre-LN leaves the stream unnormalised: normalise once before the head
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.tok_emb.weight  # one (V, C) matrix reads tokens in and scores them out
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, init_std^2) weights, zero biases, residual projections / sqrt(2 n_layer)."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, LearnedPositionalEmbedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, (LayerNorm, RMSNorm)):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        # Each block adds two branch outputs to the residual stream; 2 n_layer additions of independent terms
        # would grow its variance linearly with depth. Shrinking their last weights by sqrt(2 n_layer) keeps
        # the total added variance about the same for any depth (GPT-2 paper, section 2.3).
        for block in self.blocks:
            for proj in residual_projections(block):
                nn.init.normal_(proj.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))

    # -- forward -------------------------------------------------------------------------------------

    @staticmethod
    def _check_ids(idx: torch.Tensor) -> None:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"idx must be a tensor of token ids of shape (B, T); got {shape}")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise ValueError(f"idx must hold integer token ids; got dtype {idx.dtype}")
        t = idx.shape[1]
        if t == 0:
            raise ValueError("idx must hold at least one token per sequence (T >= 1)")

    def _check_idx(self, idx: torch.Tensor) -> None:
        self._check_ids(idx)
        t = idx.shape[1]
        if self.config.pos == "learned" and t > self.config.block_size:
            raise ValueError(
                f"sequence length {t} exceeds block_size={self.config.block_size}: learned positional embeddings "
                f"have no vector for positions {self.config.block_size} and beyond (crop the input to the last "
                f"block_size tokens, or use pos='sinusoidal', 'rope' or 'alibi')"
            )

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> the residual stream's start (B, T, C): token embedding + positions, dropout."""
        self._check_idx(idx)
        t = idx.shape[1]
        x = self.tok_emb(idx)  # (B, T, C): a table lookup, row idx[b, t]
        if self.pos_emb is not None:
            x = x + self.pos_emb(idx)  # (T, C) broadcasts over the batch
        elif self.config.pos == "sinusoidal":
            table = self.pos_table
            if t > table.shape[0]:  # a formula: longer sequences get their rows computed on the fly
                table = sinusoidal_encoding(t, self.config.n_embd, device=idx.device) * (
                    self.config.init_std * math.sqrt(2)
                )
            x = x + table[:t].to(x.dtype)
        return self.drop(x)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T) token ids [, (B, T) targets] -> (logits (B, T, V), mean cross-entropy or None).

        Targets equal to -100 are ignored by the loss (e.g. padding or prompt tokens). If every target is
        ignored the mean is over nothing and the loss is NaN, as in ``F.cross_entropy``.
        """
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)  # causal self-attention then MLP, each with a residual (Pre-LN)
        logits = self.lm_head(self.norm_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        if not isinstance(targets, torch.Tensor) or targets.shape != idx.shape:
            shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}; got {shape}")
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    # -- bookkeeping ---------------------------------------------------------------------------------

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters (a tied matrix counts once).

        ``non_embedding=True`` leaves out the vocabulary matrices (the token embedding, and the head when it
        is not tied) and the learned position table, as Kaplan et al. (2020) do when they relate loss to
        model size: what remains is the blocks and the final norm, about 12 n_layer n_embd^2.
        """
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.tok_emb.weight.numel()
            if not self.config.tie_weights:
                total -= self.lm_head.weight.numel()
            if self.pos_emb is not None:
                total -= self.pos_emb.weight.numel()
        return total

    def configure_optimizer(
        self,
        weight_decay: float = 0.1,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        fused: bool | None = None,
        eps: float = 1e-8,
    ) -> torch.optim.AdamW:
        """AdamW with weight decay on every parameter with >= 2 dims, none on the others.

        As in nanoGPT: matrices (linear weights and the embedding tables, including learned positions)
        are decayed; biases and norm gains (1-D) are not, since shrinking a gain or a bias toward 0 is not
        a simpler model, just a differently scaled one. Group 0 is the decayed one. ``fused`` is passed to
        ``torch.optim.AdamW`` (None lets PyTorch choose).
        """
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)

    # -- generation ----------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_tokens: int | Iterable[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend each prompt in idx (B, T) by up to ``max_new_tokens`` tokens: -> (B, T + n), n <= max_new_tokens.

        Each step runs the model on the last ``block_size`` tokens and draws the next token with
        ``mt.sample_next`` (``temperature=0``: greedy; ``top_k``, ``top_p``: filters; ``generator``: the
        random stream). A row that produces one of ``stop_tokens`` is finished: it keeps that token and
        is padded with it while other rows continue; generation ends early once every row is finished.
        The model runs in eval mode (no dropout) and is put back in its previous mode afterwards. There is
        no KV cache: every step recomputes the whole window (chapter 14: ``mt.generate_cached`` keeps one).
        """
        self._check_ids(idx)  # longer than block_size is fine here: only the last block_size tokens are fed
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0; got {max_new_tokens!r}")
        if stop_tokens is None:
            stops = None
        else:
            stops = torch.tensor([stop_tokens] if isinstance(stop_tokens, int) else list(stop_tokens), dtype=torch.long)
            stops = stops.to(idx.device)
        was_training = self.training
        self.eval()
        try:
            finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
            for _ in range(max_new_tokens):
                window = idx[:, -self.config.block_size :]
                logits, _ = self(window)
                nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B,)
                if stops is not None:
                    nxt = torch.where(finished, idx[:, -1], nxt)  # finished rows repeat their stop token
                    finished = finished | torch.isin(nxt, stops)
                idx = torch.cat([idx, nxt[:, None].to(idx.dtype)], dim=1)
                if stops is not None and bool(finished.all()):
                    break
        finally:
            self.train(was_training)
        return idx

    def extra_repr(self) -> str:
        return f"{self.num_parameters():,} parameters"
