"""Looking inside a trained model: attention maps, head scores, head ablation, the logit lens (chapter 15).

    maps = mt.attention_maps(model, idx)      # one (B, H, T, T) tensor per layer
    mt.previous_token_score(maps[0])          # (B, H): how much each head looks one token back
    with mt.ablate_heads(model, [(1, 2)]):    # layer 1, head 2 silenced
        loss = model(idx, targets)[1]
    lens = mt.logit_lens(model, idx)          # (L + 1, B, T, V): the stream decoded after each layer

A head *score* is a mean attention weight on a fixed pattern of keys, so it lies in [0, 1]: 1 means the
head puts all its weight there, 1/(i + 1) is what a uniform causal head gives query i.

* previous token: query i on key i - 1;
* first token ("attention sink"): query i on key 0;
* induction: on a sequence that repeats with period P, query i (in the second copy) on key i - P + 1,
  the token that followed the previous occurrence of the current token.

``attention_backward`` is the gradient of attention written out by hand (dQ, dK, dV), which the chapter
derives and checks against autograd.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention

HEAD_KINDS = ("previous-token", "first-token", "induction")


# ---------------------------------------------------------------------------------------------------
# Reading the weights
# ---------------------------------------------------------------------------------------------------


def _attention_modules(model: nn.Module) -> list[MultiHeadAttention]:
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no mt.MultiHeadAttention inside: no attention to read")
    return modules


@torch.no_grad()
def attention_maps(model: nn.Module, *inputs, **kwargs) -> list[torch.Tensor]:
    """Run ``model(*inputs, **kwargs)`` once; the weights of every ``mt.MultiHeadAttention``, in call order.

    Each entry is (B, H, T_q, T_k); for a GPT on ids (B, T) that is one (B, H, T, T) tensor per layer.
    Hooks ask each attention module for ``need_weights=True`` (the course's formula, which returns them)
    and hand the model only the output it expects, so what the model computes is unchanged.
    """
    maps: list[torch.Tensor] = []

    def ask(module, args, kw):
        return args, {**kw, "need_weights": True}

    def keep(module, args, kw, out):
        y, weights = out
        maps.append(weights.detach())
        return y

    handles = []
    try:
        for module in _attention_modules(model):
            handles.append(module.register_forward_pre_hook(ask, with_kwargs=True))
            handles.append(module.register_forward_hook(keep, with_kwargs=True))
        model(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return maps


def _check_weights(weights: torch.Tensor, name: str) -> None:
    if not isinstance(weights, torch.Tensor) or weights.dim() < 2 or weights.shape[-1] != weights.shape[-2]:
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"{name} expects self-attention weights (..., T, T); got {shape}")
    if weights.shape[-1] < 2:
        raise ValueError(f"{name} needs at least 2 positions (T >= 2); got T={weights.shape[-1]}")


def previous_token_score(weights: torch.Tensor) -> torch.Tensor:
    """(..., T, T) -> (...): mean over queries i = 1 .. T-1 of the weight on key i - 1."""
    _check_weights(weights, "previous_token_score")
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def first_token_score(weights: torch.Tensor) -> torch.Tensor:
    """(..., T, T) -> (...): mean over queries i = 1 .. T-1 of the weight on key 0 (query 0 has no choice)."""
    _check_weights(weights, "first_token_score")
    return weights[..., 1:, 0].mean(-1)


def induction_score(weights: torch.Tensor, period: int) -> torch.Tensor:
    """(..., T, T) -> (...): on a sequence repeating with ``period`` P, the mean over queries i = P .. T-1
    of the weight on key i - P + 1 (the token after the current token's previous occurrence)."""
    _check_weights(weights, "induction_score")
    t = weights.shape[-1]
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period < t:
        raise ValueError(f"period must be an int in [1, T) with T={t}; got {period!r}")
    return weights.diagonal(offset=-(period - 1), dim1=-2, dim2=-1)[..., 1:].mean(-1)


def head_scores(maps: list[torch.Tensor], period: int | None = None) -> dict[str, torch.Tensor]:
    """Per-layer maps [(B, H, T, T)] -> {kind: (L, H)}, each score averaged over the batch.

    The induction score is included when the sequences repeat with ``period``.
    """
    stacked = torch.stack([m.float() for m in maps])  # (L, B, H, T, T)
    scores = {"previous-token": previous_token_score(stacked).mean(1),
              "first-token": first_token_score(stacked).mean(1)}
    if period is not None:
        scores["induction"] = induction_score(stacked, period).mean(1)
    return scores


def classify_heads(scores: dict[str, torch.Tensor], threshold: float = 0.4) -> list[list[str]]:
    """{kind: (L, H)} -> labels [layer][head]: the kind with the highest score if it reaches ``threshold``,
    else "mixed". Scores are mean weights, so a threshold of 0.4 means "40% of its attention on the pattern"."""
    if not scores:
        raise ValueError("classify_heads needs at least one kind of score")
    kinds = list(scores)
    table = torch.stack([scores[k] for k in kinds])  # (K, L, H)
    best, which = table.max(0)
    return [[kinds[int(k)] if float(s) >= threshold else "mixed" for s, k in zip(srow, krow)]
            for srow, krow in zip(best, which)]


def repeated_random_tokens(
    batch: int, length: int, vocab_size: int, generator: torch.Generator | None = None, low: int = 0
) -> torch.Tensor:
    """(B, 2 * length) long: ``length`` uniform random ids in [low, vocab_size), then the same ids again.

    Nothing in the first half can be predicted; every token of the second half can, by copying: the
    test bed of induction heads (Olsson et al., 2022).
    """
    if length < 2 or batch < 1 or not 0 <= low < vocab_size:
        raise ValueError(f"need batch >= 1, length >= 2 and 0 <= low < vocab_size; got {batch}, {length}, "
                         f"{low}, {vocab_size}")
    first = torch.randint(low, vocab_size, (batch, length), generator=generator)
    return torch.cat([first, first], dim=1)


def token_losses(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B, T - 1): the cross-entropy of predicting idx[:, t + 1] from idx[:, :t + 1]."""
    logits = model(idx)[0]
    return F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), idx[:, 1:], reduction="none")


# ---------------------------------------------------------------------------------------------------
# Intervening: silence heads
# ---------------------------------------------------------------------------------------------------


def zero_head(merged: torch.Tensor, head: int, n_head: int) -> torch.Tensor:
    """(B, T, C) concatenated head outputs -> a copy with head ``head``'s D = C // n_head features zeroed.

    This is what W_O receives once one head is silenced: its slice of the concatenation is 0, the others
    are untouched, so the head's whole contribution ``o_h W_O[h*D:(h+1)*D]`` disappears from the output.
    """
    if merged.dim() != 3 or n_head <= 0 or merged.shape[-1] % n_head:
        raise ValueError(f"expected (B, T, C) with n_head dividing C; got {tuple(merged.shape)}, n_head={n_head}")
    if not 0 <= head < n_head:
        raise ValueError(f"head must be in [0, {n_head}); got {head}")
    d = merged.shape[-1] // n_head
    out = merged.clone()
    out[..., head * d:(head + 1) * d] = 0
    return out


@contextlib.contextmanager
def ablate_heads(model: nn.Module, heads: Iterable[tuple[int, int]]) -> Iterator[nn.Module]:
    """Inside the ``with``, the listed (layer, head) pairs output zero: W_O sees their slice as 0.

    ``layer`` counts the model's ``mt.MultiHeadAttention`` modules in order (a GPT's blocks).
    """
    modules = _attention_modules(model)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        if not 0 <= layer < len(modules) or not 0 <= head < modules[layer].n_head:
            raise ValueError(f"no head ({layer}, {head}): the model has {len(modules)} attention layers of "
                             f"{modules[0].n_head} heads")
        by_layer.setdefault(layer, []).append(head)
    handles = []

    def make_hook(attn: MultiHeadAttention, silenced: list[int]):
        def hook(module, args):
            x = args[0]
            for h in silenced:
                x = zero_head(x, h, attn.n_head)
            return (x, *args[1:])
        return hook

    try:
        for layer, silenced in by_layer.items():
            attn = modules[layer]
            handles.append(attn.o_proj.register_forward_pre_hook(make_hook(attn, silenced)))
        yield model
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------------------------------------------
# The logit lens
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def residual_stream(model: nn.Module, idx: torch.Tensor) -> list[torch.Tensor]:
    """A GPT's residual stream (B, T, C) after the embedding and after each block: n_layer + 1 tensors."""
    if not all(hasattr(model, a) for a in ("embed", "blocks", "norm_f", "lm_head")):
        raise ValueError(f"residual_stream expects an mt.GPT; got {type(model).__name__}")
    x = model.embed(idx)
    stream = [x]
    for block in model.blocks:
        x = block(x)
        stream.append(x)
    return stream


def lens_logits(x: torch.Tensor, norm: nn.Module, unembed: torch.Tensor) -> torch.Tensor:
    """(..., C) residual vectors -> (..., V) logits: the final norm, then the unembedding (V, C)."""
    return norm(x) @ unembed.T


@torch.no_grad()
def logit_lens(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (n_layer + 1, B, T, V): every layer's residual stream read out by the model's own head.

    The last entry is the model's logits; earlier ones show what the stream "would predict" if the
    remaining blocks were skipped (nostalgebraist, 2020).
    """
    return torch.stack([lens_logits(x, model.norm_f, model.lm_head.weight) for x in residual_stream(model, idx)])


# ---------------------------------------------------------------------------------------------------
# Backprop through attention, by hand
# ---------------------------------------------------------------------------------------------------


def attention_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, d_out: torch.Tensor,
    is_causal: bool = False, scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of O = softmax(s Q K^T [+ mask]) V with respect to Q, K, V, given dL/dO.

    (..., T_q, D), (..., T_k, D), (..., T_k, D_v), (..., T_q, D_v) -> dQ, dK, dV shaped like Q, K, V:

        P = softmax(S),  dV = P^T dO,  dP = dO V^T,
        dS = P * (dP - rowsum(dP * P)),  dQ = s dS K,  dK = s dS^T Q.

    rowsum(dP * P) equals rowsum(dO * O): flash attention's backward uses that cheaper form.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or d_out.shape != (*q.shape[:-1], v.shape[-1]):
        raise ValueError(f"shapes do not fit attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                         f"d_out {tuple(d_out.shape)}")
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = s * q @ k.transpose(-2, -1)
    if is_causal:
        t_q, t_k = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    p = torch.softmax(scores, dim=-1)
    dv = p.transpose(-2, -1) @ d_out
    dp = d_out @ v.transpose(-2, -1)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
    dq = s * ds @ k
    dk = s * ds.transpose(-2, -1) @ q
    return dq, dk, dv
