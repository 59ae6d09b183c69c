"""Choosing the next token from a language model's logits (chapter 10).

A language model gives, at every step, one score (logit) per vocabulary entry. Generation turns the last
position's scores into one token, appends it and repeats. How it picks is a choice, separate from the model:

* greedy: the arg max, always the same answer (``temperature=0``);
* temperature tau: sample from softmax(logits / tau); tau < 1 sharpens the distribution, tau > 1 flattens it;
* top-k: sample only among the k highest-scoring tokens (Fan et al., 2018);
* top-p (nucleus): sample only among the smallest set of most likely tokens whose total probability is at
  least p (Holtzman et al., 2020), so the set is small when the model is sure and large when it is not.

The filters set the logits of excluded tokens to -inf, so that the softmax gives them probability 0; they
compose (temperature, then top-k, then top-p) in ``sample_next``. ``GPT.generate`` calls ``sample_next``.
"""

from __future__ import annotations

import torch


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or logits.shape[-1] == 0:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a tensor (..., V) with V >= 1; got {shape}")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row, set the others to -inf: (..., V) -> (..., V).

    Exactly k entries stay finite per row (ties at the k-th value are broken by ``torch.topk``), so a sample
    can never fall outside them. ``k >= V`` keeps everything. The input is not modified.
    """
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be a positive int; got {k!r}")
    if k >= logits.shape[-1]:
        return logits.clone()
    kept = torch.topk(logits, k, dim=-1).indices  # (..., k)
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, kept, logits.gather(-1, kept))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability sums to >= p: (..., V) -> (..., V).

    Sort each row's probabilities in decreasing order and keep token i of that order while the mass *before*
    it is still < p: the token that carries the running sum to p or beyond is the last one kept. The most
    likely token is always kept (the mass before it is 0), so no row is ever emptied; ``p = 1`` keeps
    everything. Probabilities are those of softmax(logits), summed in float32 (float64 for float64 input).
    """
    _check_logits(logits)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be a number in (0, 1]; got {p!r}")
    if p >= 1.0:
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    cumulative = probs.cumsum(dim=-1)
    mass_before = torch.cat([torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], dim=-1)  # ranked above
    keep_sorted = mass_before < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)  # back to vocabulary order
    return logits.masked_fill(~keep, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row from next-token logits: (B, V) -> (B,) long.

    ``temperature == 0`` is greedy decoding (the arg max; top-k and top-p then change nothing). Otherwise
    the logits are divided by ``temperature`` (> 0), filtered by ``top_k`` and ``top_p`` (None: off), and one
    token is drawn from the softmax with ``torch.multinomial`` using ``generator`` (for reproducible draws).
    """
    _check_logits(logits)
    if logits.dim() != 2:
        raise ValueError(f"sample_next expects logits of shape (B, V); got {tuple(logits.shape)}")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0 means greedy); got {temperature!r}")
    if top_k is not None:  # validate even when greedy, so a bad argument never passes silently
        top_k_filter(logits[:1], top_k)
    if top_p is not None:
        top_p_filter(logits[:1], top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_k is not None:
        scaled = top_k_filter(scaled, top_k)
    if top_p is not None:
        scaled = top_p_filter(scaled, top_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
