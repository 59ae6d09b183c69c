"""Supervised fine-tuning (SFT) of the course GPT: instructions, special tokens, prompt-masked loss, LoRA (chapter 16).

An instruction example is a prompt and a response, written with three special tokens that never occur in text::

    <|prompt|> Who says this line?\\nO Romeo, Romeo! ... <|response|> JULIET <|end|>

The model is trained on the response only: every target that belongs to the prompt (including the
``<|response|>`` marker itself) is set to -100, which ``mt.GPT``'s loss ignores, so the model learns to
*answer*, not to produce questions. ``<|end|>`` is trained, so that generation knows when to stop.

The course model is character-level and every one of its characters occurs in the corpus, so there is no unused
character to lend to a special token: ``add_special_tokens`` gives the model new embedding rows instead (the
head is tied, so they are also new output rows), initialised at the mean of the existing rows plus a little
noise (a new token then starts with an average, not an extreme, probability).

LoRA (Hu et al., 2021) freezes a linear layer's weight W (out, in) and learns a low-rank update::

    y = x W^T + b + (alpha / r) * x A^T B^T,      A (r, in) random,  B (out, r) zeros

so the layer behaves as W + (alpha / r) B A; with B = 0 it is exactly the base layer, and after training the
update can be merged into W (``LoRALinear.merged``) at no cost at inference.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .data import CharVocab, markdown_play_to_text, play_files
from .gpt import GPT, GPTConfig

SPECIAL_TOKENS = ("<|prompt|>", "<|response|>", "<|end|>")
IGNORE_INDEX = -100
QUESTIONS = {"speaker": "Who says this line?", "play": "Which play is this from?"}


# ---------------------------------------------------------------------------------------------------
# The data: instruction examples built from the plays
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SFTExample:
    """One instruction example: the prompt (question and line), the expected response, and its task name."""

    prompt: str
    response: str
    task: str


def play_speeches(titles: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """(play title, speaker, first line of the speech) for every speech of the chosen plays, in corpus order."""
    out = []
    for path in play_files():
        markdown = path.read_text(encoding="utf-8")
        title = markdown.splitlines()[0].lstrip("#").strip()
        if titles is not None and title not in titles:
            continue
        for speech in markdown_play_to_text(markdown).strip().split("\n\n"):
            lines = speech.split("\n")
            out.append((title, lines[0].rstrip(":"), lines[1]))
    if titles is not None:
        missing = set(titles) - {t for t, _, _ in out}
        if missing:
            raise ValueError(f"no play titled {sorted(missing)} in the corpus")
    return out


def instruction_dataset(
    titles: Sequence[str] = ("Macbeth", "Othello", "Romeo and Juliet", "Timon of Athens"),
    n_speakers: int = 3,
    min_chars: int = 20,
    max_chars: int = 60,
    seed: int = 0,
) -> list[SFTExample]:
    """Instruction examples from the plays, shuffled with ``seed``.

    "Which play is this from?" for lines of ``min_chars`` to ``max_chars`` characters that occur only once (as many
    from each play, drawn at random), and "Who says this line?" for the lines of each play's ``n_speakers`` most
    talkative characters. The default plays lie in the last 10 % of the corpus, the part the course model was
    *validated* on: it never trained on these lines.
    """
    speeches = [s for s in play_speeches(titles) if min_chars <= len(s[2]) <= max_chars]
    seen = Counter(line for _, _, line in speeches)
    speeches = [s for s in speeches if seen[s[2]] == 1]  # a repeated line would sit in both splits (and be ambiguous)
    top = {t: {name for name, _ in Counter(sp for tt, sp, _ in speeches if tt == t).most_common(n_speakers)}
           for t in titles}
    rng = random.Random(seed)
    per_play = min(Counter(t for t, _, _ in speeches).values())  # as many lines of each play: chance is 1 / plays
    balanced = [s for t in titles for s in rng.sample([s for s in speeches if s[0] == t], per_play)]
    examples = [SFTExample(f"{QUESTIONS['play']}\n{line}", title, "play") for title, _, line in balanced]
    examples += [SFTExample(f"{QUESTIONS['speaker']}\n{line}", speaker, "speaker")
                 for title, speaker, line in speeches if speaker in top[title]]
    rng.shuffle(examples)
    return examples


# ---------------------------------------------------------------------------------------------------
# Tokens: the character vocabulary plus three special tokens
# ---------------------------------------------------------------------------------------------------


class SFTTokenizer:
    """Characters of ``vocab`` (ids 0 .. V-1) and ``SPECIAL_TOKENS`` (ids V, V+1, V+2)."""

    def __init__(self, vocab: CharVocab):
        self.vocab = vocab
        self.prompt_id, self.response_id, self.end_id = (vocab.size + i for i in range(len(SPECIAL_TOKENS)))

    @property
    def size(self) -> int:
        return self.vocab.size + len(SPECIAL_TOKENS)

    def encode_prompt(self, prompt: str) -> list[int]:
        """``<|prompt|>`` prompt ``<|response|>``: what the model sees before it answers."""
        return [self.prompt_id, *self.vocab.encode(prompt), self.response_id]

    def encode(self, example: SFTExample) -> tuple[list[int], int]:
        """-> (the whole example's ids, the number of prompt ids, ``<|response|>`` included)."""
        prompt = self.encode_prompt(example.prompt)
        return prompt + self.vocab.encode(example.response) + [self.end_id], len(prompt)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(SPECIAL_TOKENS[i - self.vocab.size] if i >= self.vocab.size else self.vocab.chars[i]
                       for i in ids)


def mask_prompt_targets(
    ids: torch.Tensor, prompt_lengths: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and prompt-masked targets of a padded batch: ids (B, L), prompt_lengths (B,), lengths (B,)
    -> x (B, L-1), y (B, L-1).

    ``x = ids[:, :-1]`` and ``y = ids[:, 1:]`` (next-token prediction), then ``y[b, t] = -100`` wherever the
    target ``ids[b, t + 1]`` is a prompt token (t + 1 < prompt_lengths[b]) or padding (t + 1 >= lengths[b]).
    """
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise ValueError(f"ids must be (B, L) with L >= 2; got {tuple(ids.shape)}")
    if prompt_lengths.shape != (ids.shape[0],) or lengths.shape != (ids.shape[0],):
        raise ValueError("prompt_lengths and lengths must be (B,) tensors, one per row of ids")
    bad = (prompt_lengths < 1) | (lengths > ids.shape[1]) | (prompt_lengths >= lengths)
    if bool(bad.any()):
        raise ValueError("each row needs 1 <= prompt_length < length <= L (at least one response token)")
    x, y = ids[:, :-1], ids[:, 1:].clone()
    pos = torch.arange(1, ids.shape[1], device=ids.device)  # the position of each target in ids
    trained = (pos[None, :] >= prompt_lengths[:, None]) & (pos[None, :] < lengths[:, None])
    return x, y.masked_fill(~trained, IGNORE_INDEX)


def collate(tokenizer: SFTTokenizer, examples: Sequence[SFTExample]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of examples -> x (B, T), y (B, T) padded (with ``<|end|>``, never trained on) and prompt-masked."""
    encoded = [tokenizer.encode(e) for e in examples]
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), tokenizer.end_id, dtype=torch.long)
    for row, (seq, _) in enumerate(encoded):
        ids[row, : len(seq)] = torch.tensor(seq)
    prompt_lengths = torch.tensor([n for _, n in encoded])
    lengths = torch.tensor([len(seq) for seq, _ in encoded])
    return mask_prompt_targets(ids, prompt_lengths, lengths)


def add_special_tokens(model: GPT, n_new: int = len(SPECIAL_TOKENS), seed: int = 0) -> GPT:
    """A copy of ``model`` with ``n_new`` more vocabulary rows (embedding and, tied or not, the head).

    The old rows are copied; each new row is the mean of the old rows plus N(0, (init_std / 10)^2) noise, so
    the new tokens are distinct but start as average ones. The original model is left unchanged.
    """
    if n_new < 1:
        raise ValueError(f"n_new must be >= 1; got {n_new}")
    old = model.config
    new = GPT(GPTConfig.from_dict({**old.to_dict(), "vocab_size": old.vocab_size + n_new}))
    state = {k: v for k, v in model.state_dict().items() if k not in ("tok_emb.weight", "lm_head.weight")}
    new.load_state_dict(state, strict=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("tok_emb", "lm_head"):
            if name == "lm_head" and old.tie_weights:
                continue
            w_old, w_new = getattr(model, name).weight, getattr(new, name).weight
            w_new[: old.vocab_size] = w_old
            noise = torch.randn(n_new, w_old.shape[1], generator=g) * (old.init_std / 10)
            w_new[old.vocab_size :] = w_old.mean(0) + noise.to(w_old.dtype)
    return new.to(next(model.parameters()).device).train(model.training)


# ---------------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``rank`` update: (..., in) -> (..., out).

    ``forward(x) = base(x) + scale * (x A^T) B^T`` with ``scale = alpha / rank``, A (rank, in) ~ N(0, 1/in),
    B (out, rank) = 0. ``delta_weight()`` is ``scale * B A`` and ``merged()`` an ``nn.Linear`` holding
    W + ``delta_weight()``, equal to this layer.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear; got {type(base).__name__}")
        top = min(base.in_features, base.out_features)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= top:
            raise ValueError(f"rank must be an int in [1, {top}]; got {rank!r}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank, self.scale = rank, alpha / rank
        w = base.weight
        a = torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features)
        self.lora_A = nn.Parameter(a.to(device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * (x @ self.lora_A.T) @ self.lora_B.T

    def delta_weight(self) -> torch.Tensor:
        """The update the low-rank pair adds to W: (out, in), of rank <= ``rank``."""
        return self.scale * self.lora_B @ self.lora_A

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight W + scale B A (and the base's bias): the same function, no extra cost."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        out = out.to(device=self.base.weight.device, dtype=self.base.weight.dtype)
        out.weight.copy_(self.base.weight + self.delta_weight())
        if self.base.bias is not None:
            out.bias.copy_(self.base.bias)
        return out


def apply_lora(
    model: GPT, rank: int = 8, alpha: float = 16.0, train_embeddings: bool = True, seed: int = 0
) -> list[LoRALinear]:
    """Freeze ``model`` and wrap every linear layer inside its blocks in a ``LoRALinear`` (in place).

    With ``train_embeddings`` the token embedding (and with it the tied head) stays trainable: the new special
    tokens' rows must be learned, and a frozen random row could not be. Returns the LoRA layers.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    layers = []
    for block in model.blocks:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    lora = LoRALinear(child, rank, alpha, generator=g)
                    setattr(parent, name, lora)
                    layers.append(lora)
    if train_embeddings:
        model.tok_emb.weight.requires_grad_(True)
    return layers


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every ``LoRALinear`` in ``model`` by its ``merged()`` linear layer (in place); returns the model."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, name, child.merged())
    return model


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------------


def sft_train(
    model: GPT, tokenizer: SFTTokenizer, examples: Sequence[SFTExample], steps: int = 100, batch_size: int = 16,
    lr: float = 1e-3, seed: int = 0,
) -> list[float]:
    """Fine-tune the trainable parameters of ``model`` on ``examples`` (AdamW, no weight decay, constant lr
    after a 10 % warm-up, gradient clipping at 1); -> the training loss of each step (response tokens only)."""
    if not examples:
        raise ValueError("sft_train needs at least one example")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
    rng = random.Random(seed)
    warmup = max(1, steps // 10)
    device = next(model.parameters()).device
    losses = []
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        x, y = collate(tokenizer, rng.sample(list(examples), min(batch_size, len(examples))))
        _, loss = model(x.to(device), y.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def answer(model: GPT, tokenizer: SFTTokenizer, prompt: str, max_new_tokens: int = 20) -> str:
    """The model's greedy response to ``prompt``, up to ``<|end|>`` (not included) or ``max_new_tokens``."""
    device = next(model.parameters()).device
    idx = torch.tensor([tokenizer.encode_prompt(prompt)], dtype=torch.long, device=device)
    out = model.generate(idx, max_new_tokens, temperature=0.0, stop_tokens=tokenizer.end_id)[0, idx.shape[1]:]
    ids = out.tolist()
    ids = ids[: ids.index(tokenizer.end_id)] if tokenizer.end_id in ids else ids
    return tokenizer.decode(ids)


@torch.no_grad()
def response_nll(
    model: GPT, tokenizer: SFTTokenizer, examples: Sequence[SFTExample], batch_size: int = 64
) -> torch.Tensor:
    """Summed negative log-likelihood of each example's response (and ``<|end|>``) given its prompt: -> (n,)."""
    out = []
    for i in range(0, len(examples), batch_size):
        x, y = collate(tokenizer, examples[i : i + batch_size])
        logits, _ = model(x.to(next(model.parameters()).device))
        logp = torch.log_softmax(logits.float(), dim=-1)
        keep = y != IGNORE_INDEX
        picked = logp.gather(-1, y.clamp_min(0).to(logp.device)[..., None]).squeeze(-1)
        out.append(-(picked * keep.to(logp.device)).sum(dim=1).cpu())
    return torch.cat(out)


def choice_accuracy(
    model: GPT, tokenizer: SFTTokenizer, examples: Sequence[SFTExample], options: Sequence[str]
) -> float:
    """Multiple-choice accuracy: the fraction of examples whose response is the option of least ``response_nll``.

    Unlike greedy generation this needs no stop token, so the base model, which has never seen the format,
    can be scored the same way.
    """
    if not examples:
        raise ValueError("choice_accuracy needs at least one example")
    candidates = [SFTExample(e.prompt, o, e.task) for e in examples for o in options]
    nll = response_nll(model, tokenizer, candidates).view(len(examples), len(options))
    picked = nll.argmin(dim=1).tolist()
    return sum(options[j] == e.response for j, e in zip(picked, examples)) / len(examples)


def sft_accuracy(
    model: GPT, tokenizer: SFTTokenizer, examples: Sequence[SFTExample], max_new_tokens: int = 20
) -> dict[str, float]:
    """Exact-match accuracy of greedy answers, per task and overall ("all")."""
    hits: dict[str, list[bool]] = {}
    for e in examples:
        ok = answer(model, tokenizer, e.prompt, max_new_tokens) == e.response
        hits.setdefault(e.task, []).append(ok)
        hits.setdefault("all", []).append(ok)
    return {task: sum(v) / len(v) for task, v in hits.items()}
