"""Inference: generating text from a trained GPT quickly and in little memory (chapter 14).

Generation runs the model once per new token. Without help, step t recomputes the keys and values of all t
tokens before it, although they have not changed (causal attention: a token's K and V depend on the tokens
before it only). A **KV cache** keeps them:

* *prefill*: one forward pass over the prompt stores every layer's keys and values (B, H_kv, T, D);
* *decode*: each new token computes its own query, key and value, appends K and V to the cache and attends
  to everything cached: one token of work per step instead of the whole prefix.

The cache costs ``2 * n_layer * B * n_kv_head * D * S`` numbers for S cached tokens (``kv_cache_bytes``),
which grouped-/multi-query attention shrinks by n_head / n_kv_head (``to_grouped_query`` derives a GQA model
from a trained one by mean-pooling its key/value heads) and a sliding window bounds by W (``KVCache`` with
``window=W`` keeps a rolling buffer of the last W keys).

Every key in a cache carries its position. Attention is masked *by position* (``position_mask``): a query at
position p sees the keys at positions p - W < j <= p, so the order of the keys inside a buffer does not
matter, a rolling buffer can overwrite its oldest slot, and prompts of different lengths can share one batch
by padding them on the left with tokens at position -1 that no real token sees (``pad_left``,
``generate_batch``).

Speculative decoding (Leviathan et al., 2023; Chen et al., 2023) lets a small *draft* model propose k tokens
that the large *target* model checks in one pass; accepting draft token x with probability
min(1, p(x) / q(x)) and otherwise sampling from the residual max(p - q, 0), renormalised, makes every emitted
token follow the target's distribution p exactly (``speculative_accept``, ``residual_distribution``,
``speculative_generate``).

Weight-only int8 quantisation stores each linear layer's weight as int8 with one float scale per output
channel (``quantize_int8``, ``Int8Linear``, ``quantize_linears``): 4x less memory for the weights, the
activations stay in floating point.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .generate import sample_next
from .gpt import GPT

PAD_POSITION = -1
"""The position of a padding token: only other padding tokens attend to it (and it to them)."""

EMPTY_POSITION = 2**62
"""The position recorded in an empty slot of a rolling buffer: later than every query, so never attended to."""


# ---------------------------------------------------------------------------------------------------
# Masks by position, and the cache
# ---------------------------------------------------------------------------------------------------


def position_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Which keys each query may attend to, from positions: (B, T), (B, S) -> bool (B, 1, T, S).

    A real query at position p sees the real keys at positions j with j <= p (causal) and, with a ``window``
    W, p - j < W (the last W positions, itself included). A padding query (position -1, ``PAD_POSITION``)
    sees the padding keys only, so that padding never leaks into real tokens and no row is fully masked.
    """
    if q_pos.dim() != 2 or k_pos.dim() != 2 or q_pos.shape[0] != k_pos.shape[0]:
        raise ValueError(f"positions must be (B, T) and (B, S); got {tuple(q_pos.shape)} and {tuple(k_pos.shape)}")
    q, k = q_pos[:, :, None], k_pos[:, None, :]
    allowed = (k <= q) & ((k >= 0) == (q >= 0))  # causal; real sees real, padding sees padding
    if window is not None:
        allowed = allowed & (q - k < window)
    return allowed[:, None]


class LayerKVCache:
    """One attention layer's cache of keys and values (B, H_kv, S, D) and their positions (B, S).

    ``window=None`` keeps every key (the cache grows by one column per decoded token). ``window=W`` is a
    rolling buffer of W slots: the token appended as the n-th column overwrites slot n mod W, so memory stays
    at W keys however long the text. ``update`` is what ``mt.MultiHeadAttention`` calls (its ``cache=``).
    """

    def __init__(self, window: int | None = None):
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be a positive int or None; got {window!r}")
        self.window = window
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.pos: torch.Tensor | None = None  # (B, S) long
        self.seen = 0  # columns appended so far (the rolling buffer's write pointer)
        self._next: torch.Tensor | None = None  # (B,) the position of each row's next real token

    def __len__(self) -> int:
        """The number of key columns held (at most ``window``)."""
        return 0 if self.k is None else self.k.shape[-2]

    def next_positions(self, b: int, t: int) -> torch.Tensor:
        """The positions (B, T) of T tokens appended next: after each row's last real token."""
        start = torch.zeros(b, dtype=torch.long) if self._next is None else self._next
        return start[:, None] + torch.arange(t, device=start.device)[None, :]

    def update(
        self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store new keys/values (B, H_kv, T, D) at ``positions`` (T,) or (B, T).

        Returns what the T new queries attend to: keys and values (B, H_kv, S, D) (the cached ones, then the
        new ones), the mask (B, 1, T, S) from ``position_mask`` and the keys' positions (B, S).
        """
        b, _, t, _ = k.shape
        positions = torch.as_tensor(positions, device=k.device).long()
        positions = positions.expand(b, t) if positions.dim() == 1 else positions
        if self.k is not None and (self.k.shape[0] != b or self.k.shape[1] != k.shape[1]):
            raise ValueError(f"cache holds (B, H_kv) = {tuple(self.k.shape[:2])}; got new keys {tuple(k.shape)}")
        if self.k is None:
            keys, values, key_pos = k, v, positions
        else:
            keys, values = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
            key_pos = torch.cat([self.pos, positions], dim=-1)
        mask = position_mask(positions, key_pos, self.window)
        if self.window is None:
            self.k, self.v, self.pos = keys, values, key_pos
        else:
            self._write_ring(k, v, positions)
        last = positions.max(dim=-1).values + 1
        self._next = last if self._next is None else torch.maximum(self._next, last)
        self.seen += t
        return keys, values, mask, key_pos

    def _write_ring(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor) -> None:
        w, t = self.window, k.shape[-2]
        if self.k is None:  # allocate the W slots once; empty slots hold a position no query reaches
            b, h, _, d = k.shape
            self.k = k.new_zeros(b, h, w, d)
            self.v = v.new_zeros(b, h, w, v.shape[-1])
            self.pos = torch.full((b, w), EMPTY_POSITION, dtype=torch.long, device=k.device)
        keep = min(t, w)  # of a long chunk only the last W columns survive
        slots = (self.seen + torch.arange(t - keep, t, device=k.device)) % w
        self.k = self.k.index_copy(-2, slots, k[..., t - keep :, :])
        self.v = self.v.index_copy(-2, slots, v[..., t - keep :, :])
        self.pos = self.pos.index_copy(-1, slots, positions[:, t - keep :])

    def truncate(self, n: int) -> None:
        """Keep the first n columns only (a growing cache; speculative decoding rolls back rejected tokens)."""
        if self.window is not None:
            raise ValueError("a rolling buffer cannot be rolled back: its old slots are overwritten")
        if not 0 <= n <= len(self):
            raise ValueError(f"can keep 0 .. {len(self)} columns; got {n}")
        if n == len(self):
            return
        self.k, self.v, self.pos = self.k[..., :n, :], self.v[..., :n, :], self.pos[:, :n]
        self.seen = n
        self._next = (self.pos.max(dim=-1).values + 1) if n else None

    def nbytes(self) -> int:
        """Bytes held by the keys and values (the positions, B * S integers, are not counted)."""
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes


class KVCache:
    """A GPT's KV cache: one ``LayerKVCache`` per block (``layers``), all with the same ``window``."""

    def __init__(self, n_layer: int, window: int | None = None):
        if isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
            raise ValueError(f"n_layer must be a positive int; got {n_layer!r}")
        self.window = window
        self.layers = [LayerKVCache(window) for _ in range(n_layer)]

    def __len__(self) -> int:
        return len(self.layers[0])

    @property
    def seen(self) -> int:
        """Tokens (columns) appended so far, including those a rolling buffer has dropped."""
        return self.layers[0].seen

    def next_positions(self, b: int, t: int) -> torch.Tensor:
        return self.layers[0].next_positions(b, t)

    def truncate(self, n: int) -> None:
        for layer in self.layers:
            layer.truncate(n)

    def nbytes(self) -> int:
        """Bytes of every layer's keys and values."""
        return sum(layer.nbytes() for layer in self.layers)


def kv_cache_bytes(
    n_layer: int, n_kv_head: int, head_size: int, seq_len: int, batch: int = 1, bytes_per_number: int = 4,
    window: int | None = None,
) -> int:
    """Closed form of a KV cache's size: 2 (K and V) * n_layer * batch * n_kv_head * head_size * S * bytes,
    with S = seq_len, or min(seq_len, window) for a rolling buffer."""
    s = seq_len if window is None else min(seq_len, window)
    return 2 * n_layer * batch * n_kv_head * head_size * s * bytes_per_number


# ---------------------------------------------------------------------------------------------------
# Running a GPT with a cache: prefill and decode are the same call
# ---------------------------------------------------------------------------------------------------


def _embed_at(model: GPT, idx: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Token embedding plus the absolute position vectors (learned or sinusoidal) at ``positions`` (B, T)."""
    x = model.tok_emb(idx)
    rows = positions.clamp(min=0)  # padding tokens borrow position 0; no real token ever sees them
    if model.config.pos == "learned":
        if int(rows.max()) >= model.config.block_size:
            raise ValueError(
                f"position {int(rows.max())} is beyond block_size={model.config.block_size}: learned positions "
                f"have no vector there"
            )
        x = x + model.pos_emb.weight[rows]
    elif model.config.pos == "sinusoidal":
        from .positional import sinusoidal_encoding

        n = int(rows.max()) + 1
        table = model.pos_table if n <= model.pos_table.shape[0] else sinusoidal_encoding(
            n, model.config.n_embd, device=idx.device) * (model.config.init_std * 2**0.5)
        x = x + table[rows].to(x.dtype)
    return x


@torch.no_grad()
def forward_with_cache(
    model: GPT, idx: torch.Tensor, cache: KVCache, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits (B, T, V) of new tokens idx (B, T) that come after everything in ``cache``, which they join.

    With an empty cache this is the *prefill* (the whole prompt at once); with T = 1 a *decode* step.
    ``positions`` (B, T) default to the positions after each row's last cached token; -1 marks padding.
    The model must be a Pre-LN ``mt.GPT`` in eval mode (no dropout); no gradients are recorded.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"forward_with_cache expects an mt.GPT; got {type(model).__name__}")
    if len(cache.layers) != len(model.blocks):
        raise ValueError(f"the cache has {len(cache.layers)} layers, the model {len(model.blocks)} blocks")
    if model.training:
        raise ValueError("put the model in eval mode (model.eval()): a cache is for inference, without dropout")
    model._check_ids(idx)
    b, t = idx.shape
    positions = cache.next_positions(b, t).to(idx.device) if positions is None else torch.as_tensor(positions)
    positions = positions.to(idx.device).long().expand(b, t)
    x = _embed_at(model, idx, positions)
    for block, layer in zip(model.blocks, cache.layers):
        if not block.norm_first:
            raise ValueError("forward_with_cache supports Pre-LN blocks (mt.GPT's) only")
        x = x + block.attn(block.norm_1(x), positions=positions, cache=layer)
        x = x + block.mlp(block.norm_2(x))
    return model.lm_head(model.norm_f(x))


@torch.no_grad()
def generate_cached(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    *,
    window: int | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """``GPT.generate`` with a KV cache: idx (B, T) -> (B, T + max_new_tokens).

    One prefill over the prompts, then one decode step per new token, drawing it with ``mt.sample_next``
    exactly as ``GPT.generate`` does. ``window`` uses a rolling buffer of that many positions (sliding-window
    attention; note that the model was trained with full attention over ``block_size`` tokens).
    ``positions`` (B, T): the prompts' positions, -1 on padding (see ``pad_left``). Unlike ``GPT.generate``,
    the context is not cropped to ``block_size``: keep T + max_new_tokens <= block_size to get the same tokens.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0; got {max_new_tokens!r}")
    cache = KVCache(len(model.blocks), window=window)
    out = idx
    logits = forward_with_cache(model, idx, cache, positions)[:, -1]  # prefill
    for i in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, generator)[:, None].to(idx.dtype)
        out = torch.cat([out, nxt], dim=1)
        if i + 1 < max_new_tokens:
            logits = forward_with_cache(model, nxt, cache)[:, -1]  # decode: one token against the cache
    return out


def pad_left(prompts: Sequence[Sequence[int] | torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> token ids (B, T_max) padded on the left with ``pad_id``, positions (B, T_max).

    Every prompt ends in the last column, so that the next token of every row is decoded in the same step.
    Real tokens get positions 0 .. len - 1, padding gets -1 (``PAD_POSITION``), which the masks exclude.
    """
    if len(prompts) == 0:
        raise ValueError("pad_left needs at least one prompt")
    rows = [torch.as_tensor(p, dtype=torch.long).flatten() for p in prompts]
    if any(r.numel() == 0 for r in rows):
        raise ValueError("every prompt needs at least one token")
    t = max(r.numel() for r in rows)
    idx = torch.full((len(rows), t), pad_id, dtype=torch.long)
    positions = torch.full((len(rows), t), PAD_POSITION, dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, t - r.numel() :] = r
        positions[i, t - r.numel() :] = torch.arange(r.numel())
    return idx, positions


def generate_batch(
    model: GPT, prompts: Sequence[Sequence[int] | torch.Tensor], max_new_tokens: int, **kwargs
) -> list[list[int]]:
    """Generate for prompts of different lengths in one batch: each returned list is a prompt and its continuation.

    The prompts are padded on the left (``pad_left``); keyword arguments go to ``generate_cached``.
    """
    idx, positions = pad_left(prompts)
    device = next(model.parameters()).device
    out = generate_cached(model, idx.to(device), max_new_tokens, positions=positions.to(device), **kwargs)
    return [row[idx.shape[1] - len(p) :].tolist() for row, p in zip(out.cpu(), prompts)]


# ---------------------------------------------------------------------------------------------------
# Grouped-query attention from a trained model
# ---------------------------------------------------------------------------------------------------


def to_grouped_query(model: GPT, n_kv_head: int) -> GPT:
    """A copy of ``model`` with ``n_kv_head`` key/value heads, each the mean of a group of the original ones.

    Query heads h = g * (n_head / n_kv_head) .. (g + 1) * (n_head / n_kv_head) - 1 share new head g, as in
    ``mt.MultiHeadAttention``; its W_K and W_V rows (and biases) are the means of the group's (Ainslie et al.,
    2023, who then train a little more; this function does not).
    """
    c = model.config
    n_head, old = c.n_head, c.n_kv_head or c.n_head
    if isinstance(n_kv_head, bool) or not isinstance(n_kv_head, int) or n_kv_head < 1 or old % n_kv_head:
        raise ValueError(
            f"n_kv_head must be a positive divisor of the model's {old} key/value heads; got {n_kv_head!r}"
        )
    new = GPT(c.__class__.from_dict({**c.to_dict(), "n_kv_head": n_kv_head}))
    state = dict(model.state_dict())
    group, d = old // n_kv_head, c.head_size
    for name, value in model.state_dict().items():
        if any(name.endswith(f"attn.{p}_proj.{w}") for p in "kv" for w in ("weight", "bias")):
            pooled = value.reshape(n_kv_head, group, d, *value.shape[1:]).mean(dim=1)
            state[name] = pooled.reshape(n_kv_head * d, *value.shape[1:])
    new.load_state_dict(state)
    return new.to(next(model.parameters()).device).train(model.training)


# ---------------------------------------------------------------------------------------------------
# Speculative decoding
# ---------------------------------------------------------------------------------------------------


def speculative_accept(p: torch.Tensor, q: torch.Tensor, token: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Accept draft token x (drawn from q) if u < p(x) / q(x), u ~ U(0, 1): p, q (..., V), x, u (...) -> bool (...).

    That is acceptance with probability min(1, p(x) / q(x)); written as u * q(x) < p(x) it needs no division.
    """
    px = p.gather(-1, token[..., None]).squeeze(-1)
    qx = q.gather(-1, token[..., None]).squeeze(-1)
    return u * qx < px


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Where to sample after a rejection: max(p - q, 0), normalised: (..., V), (..., V) -> (..., V).

    A rejection happens with probability sum_x max(q(x) - p(x), 0) = sum_x max(p(x) - q(x), 0) > 0 only if
    p != q; where p == q (up to rounding) the residual is empty and p itself is returned.
    """
    r = (p - q).clamp(min=0)
    total = r.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, r / total.clamp(min=torch.finfo(r.dtype).tiny), p)


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0:  # greedy: a point mass on the arg max (speculative greedy = the target's greedy)
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(torch.float32)
    return torch.softmax(logits.float() / temperature, dim=-1)


@torch.no_grad()
def speculative_generate(
    target: GPT,
    draft: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    k: int = 4,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Speculative sampling: idx (1, T) -> ((1, T + max_new_tokens), statistics).

    Each round the draft proposes k tokens one by one (x_i ~ q_i), the target scores all of them in one
    forward pass (p_1 .. p_{k+1}), and the tokens are accepted left to right with ``speculative_accept``; the
    first rejected one is replaced by a sample of ``residual_distribution(p_i, q_i)``, and if all k pass, a
    bonus token is drawn from p_{k+1}. Every emitted token is distributed exactly as the target's sampling at
    ``temperature`` (0: greedy, then the output equals the target's greedy output). Both models keep KV caches
    and roll them back after a rejection. Statistics: ``rounds``, ``proposed`` (drafted tokens), ``accepted``,
    ``rejected`` (at most one per round; drafts after a rejection are never checked), ``target_calls``,
    ``draft_calls`` (forward passes, the prefills included). The per-token acceptance rate is
    accepted / (accepted + rejected).
    """
    if idx.dim() != 2 or idx.shape[0] != 1:
        raise ValueError(f"speculative_generate takes one prompt, idx of shape (1, T); got {tuple(idx.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (draft tokens per round) must be a positive int; got {k!r}")
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0; got {temperature!r}")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError("the draft and the target must share the vocabulary")
    stats = dict(rounds=0, proposed=0, accepted=0, rejected=0, target_calls=0, draft_calls=0)
    tc, dc = KVCache(len(target.blocks)), KVCache(len(draft.blocks))
    if idx.shape[1] > 1:  # both caches hold every token except the last: it is fed at the start of a round
        forward_with_cache(target, idx[:, :-1], tc)
        forward_with_cache(draft, idx[:, :-1], dc)
        stats["target_calls"] += 1
        stats["draft_calls"] += 1
    out = idx[0].tolist()
    target_pending, draft_pending = [out[-1]], [out[-1]]
    device = idx.device

    def rand() -> torch.Tensor:
        return torch.rand((), generator=generator, device=device)

    while len(out) - idx.shape[1] < max_new_tokens:
        n = min(k, max_new_tokens - (len(out) - idx.shape[1]))
        stats["rounds"] += 1
        # 1. the draft proposes n tokens, one forward pass each
        drafts, qs = [], []
        feed = draft_pending
        for _ in range(n):
            logits = forward_with_cache(draft, torch.tensor([feed], device=device), dc)[0, -1]
            stats["draft_calls"] += 1
            q = _probs(logits, temperature)
            x = int(torch.multinomial(q, 1, generator=generator))
            drafts.append(x)
            qs.append(q)
            feed = [x]
        # 2. the target scores the pending token and the n drafts in one pass: p_1 .. p_{n+1}
        logits = forward_with_cache(target, torch.tensor([target_pending + drafts], device=device), tc)[0]
        stats["target_calls"] += 1
        ps = _probs(logits[-(n + 1) :], temperature)
        # 3. accept left to right; replace the first rejected token by a residual sample
        accepted = 0
        for i, (x, q) in enumerate(zip(drafts, qs)):
            if bool(speculative_accept(ps[i], q, torch.tensor(x, device=device), rand())):
                accepted += 1
                continue
            new = int(torch.multinomial(residual_distribution(ps[i], q), 1, generator=generator))
            stats["rejected"] += 1
            break
        else:
            new = int(torch.multinomial(ps[n], 1, generator=generator))  # all accepted: a bonus token
        stats["proposed"] += n
        stats["accepted"] += accepted
        out += drafts[:accepted] + [new]
        # 4. roll the caches back to the accepted tokens; the new token is fed next round
        base = len(tc) - (len(target_pending) + n)
        tc.truncate(base + len(target_pending) + accepted)
        held = len(dc)  # the draft fed its pending tokens and drafts[:-1]
        dc.truncate(min(held, held - (n - 1) + accepted))
        target_pending = [new]
        draft_pending = ([drafts[-1]] if accepted == n else []) + [new]
    total = idx.shape[1] + max_new_tokens
    return torch.tensor([out[:total]], dtype=idx.dtype, device=device), stats


# ---------------------------------------------------------------------------------------------------
# Weight-only int8 quantisation
# ---------------------------------------------------------------------------------------------------


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: w (out, in) -> (q int8 (out, in), scale float32 (out,)).

    scale_r = max_j |w[r, j]| / 127 and q = round(w / scale) in [-127, 127], so w ~ q * scale with an error of
    at most scale / 2 per entry. A row of zeros gets scale 1 (any scale represents it exactly).
    """
    if w.dim() != 2 or not w.dtype.is_floating_point:
        raise ValueError(f"quantize_int8 expects a floating-point matrix (out, in); got {w.dtype} {tuple(w.shape)}")
    amax = w.detach().abs().amax(dim=1).float()
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(w.detach().float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q int8 (out, in), scale (out,) -> float32 (out, in): q * scale, row by row."""
    return q.float() * scale[:, None]


class Int8Linear(nn.Module):
    """A linear layer whose weight is stored as int8 plus one float scale per output: (..., in) -> (..., out).

    Since each output r has its own scale, y_r = sum_j x_j q[r, j] s_r = s_r (x . q_r): the matrix product
    runs on the int8 values converted to the input's dtype, and the scales multiply its result.
    """

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        if q.dtype != torch.int8 or q.dim() != 2 or scale.shape != (q.shape[0],):
            raise ValueError(
                f"need q int8 (out, in) and scale (out,); got {q.dtype} {tuple(q.shape)}, {tuple(scale.shape)}"
            )
        self.in_features, self.out_features = q.shape[1], q.shape[0]
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        q, scale = quantize_int8(linear.weight)
        return cls(q, scale, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.q.to(x.dtype)) * self.scale.to(x.dtype)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_linears(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by an ``Int8Linear``.

    A linear layer whose weight is shared with another module (a GPT's head tied to the token embedding) is
    left in floating point, since the embedding still needs it.
    """
    model = copy.deepcopy(model)
    others = {id(p) for name, m in model.named_modules() if not isinstance(m, nn.Linear)
              for p in m.parameters(recurse=False)}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and id(child.weight) not in others:
                setattr(parent, name, Int8Linear.from_linear(child))
    return model


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers (a shared tensor counted once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.nbytes
    return total
