"""Training a GPT: the loss, evaluation, accumulation, mixed precision, checkpoints and the loop (chapter 11).

Chapter 11 derives each piece and checks it against PyTorch; the optimiser side (AdamW, the learning-rate
schedule, gradient clipping) lives in ``mt.optim``. This module puts them together into one loop::

    for step in range(start, max_iters):
        lr = lr_at(step, ...)                               # warm-up, cosine decay, floor
        every eval_interval steps: evaluate on fixed batches, log, save a checkpoint
        for each of grad_accum micro-batches:               # gradient accumulation
            with autocast(bf16 or not): loss = model(x, y)  # mixed precision
            (loss / grad_accum).backward()
        clip the global gradient norm; optimizer.step(); zero the gradients

A checkpoint holds everything the next step depends on (weights, optimiser state, step, every random
generator, the log so far), so a run interrupted and resumed gives exactly the losses of one that was not.

The same loop is a command line tool::

    python -m mastering_transformers.train --preset cpu-char [--key=value ...] [--resume PATH]

and runs data-parallel on N processes when ``torchrun`` launches it (chapter 13; ``mt.distributed``)::

    torchrun --nproc_per_node=N -m mastering_transformers.train --preset tiny [--distributed=ddp|fsdp]

``batch_size`` is then the global batch: every rank draws it and trains on its 1/N of the rows.

It shows a progress bar with tokens/s, evaluates periodically, and writes into ``out_dir`` a CSV log
(``log.csv``), the full checkpoint (``ckpt.pt``), the weights alone (``model.pt``, what
``load_checkpoint`` reads), a loss-curve figure (``loss.png``) and a sample of generated text
(``sample.txt``). A bad setting is reported in one line, with exit status 2.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import difflib
import functools
import hashlib
import math
import os
import random
import sys
import time
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from . import distributed as dist_mt
from .data import CharVocab, build_corpus, get_batch, train_val_split
from .gpt import GPT, GPTConfig
from .optim import AdamW, clip_grad_norm, lr_at

CHECKPOINT_FORMAT = "mastering_transformers.train/1"


class ConfigError(ValueError):
    """A setting that cannot work; the command line prints its message as one line and exits with status 2."""


# ---------------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------------


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean negative log-likelihood of the targets: logits (..., V), targets (...) -> a 0-dim tensor.

        loss_i = logsumexp(logits_i) - logits_i[target_i],    logsumexp(z) = m + log sum_j exp(z_j - m)

    with m = max_j z_j subtracted first, so that no exp overflows however large the logits are (the largest
    term becomes exp(0) = 1). Positions whose target equals ``ignore_index`` are left out of the mean; if
    all are, the mean is over nothing and the result is NaN, as with ``F.cross_entropy``. Computed in at
    least float32.
    """
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits must be (..., V) and targets (...) with the same leading dims; got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must hold integer class ids; got dtype {targets.dtype}")
    z = logits.reshape(-1, logits.shape[-1]).to(torch.promote_types(logits.dtype, torch.float32))
    t = targets.reshape(-1)
    keep = t != ignore_index
    z, t = z[keep], t[keep]
    if t.numel() and (t.min() < 0 or t.max() >= z.shape[-1]):
        raise ValueError(f"targets must be in [0, {z.shape[-1]}) or equal ignore_index={ignore_index}")
    m = z.max(dim=-1, keepdim=True).values.detach()  # a constant shift: the gradient does not depend on it
    logsumexp = m.squeeze(-1) + torch.log(torch.exp(z - m).sum(dim=-1))
    picked = z.gather(-1, t[:, None]).squeeze(-1)
    return (logsumexp - picked).mean()


# ---------------------------------------------------------------------------------------------------
# Evaluation, accumulation, mixed precision
# ---------------------------------------------------------------------------------------------------


def autocast_context(device: str | torch.device, dtype: str = "float32") -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 on ``device`` when ``dtype == "bfloat16"``, else a context that does nothing.

    Under autocast, matrix multiplications run in bfloat16 (8 bits of mantissa: a relative rounding error
    of about 2^-9 per stored number) while reductions such as softmax, norms and the loss stay in float32.
    The weights, their gradients and the optimiser state remain float32, so no loss scaling is needed
    (bfloat16 has float32's exponent range; float16 would need a ``GradScaler``).
    """
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16'; got {dtype!r}")
    device_type = torch.device(device).type
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def accumulate_gradients(
    model: nn.Module,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    autocast: contextlib.AbstractContextManager | None = None,
) -> float:
    """Forward and backward over several (x (B, T), y (B, T)) micro-batches, adding up the gradients.

    Each micro-batch's mean loss is divided by their number before ``backward``, so when the micro-batches
    hold equally many target tokens the accumulated gradient is the gradient of the mean loss over all of
    them: the same as one batch k times larger, in k times less activation memory. Returns the mean loss
    (a float). The gradients are *added* to whatever ``.grad`` holds: zero them first.
    """
    if not micro_batches:
        raise ValueError("accumulate_gradients needs at least one micro-batch")
    total = 0.0
    for x, y in micro_batches:
        with autocast if autocast is not None else contextlib.nullcontext():
            _, loss = model(x, y)
        (loss / len(micro_batches)).backward()
        total += loss.item()
    return total / len(micro_batches)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    n_batches: int,
    seed: int = 1234,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
) -> float:
    """Mean loss over ``n_batches`` fixed random windows of ``data``: the same windows at every call.

    The windows come from a generator seeded with ``seed``, separate from every other random stream, so an
    evaluation neither depends on nor disturbs the training run, and losses at different steps are measured
    on exactly the same text. Dropout is off during the evaluation (eval mode); the model's mode is restored.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1; got {n_batches}")
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for _ in range(n_batches):
            x, y = get_batch(data, batch_size, block_size, device, generator=generator)
            with autocast_context(device, dtype):
                _, loss = model(x, y)
            total += loss.item()
    finally:
        model.train(was_training)
    return total / n_batches


# ---------------------------------------------------------------------------------------------------
# Configuration and presets
# ---------------------------------------------------------------------------------------------------

MODEL_KEYS = (
    "block_size", "n_layer", "n_head", "n_embd", "n_kv_head", "dropout", "bias", "norm", "mlp", "pos",
    "tie_weights", "attn_backend", "d_ff", "rope_base", "init_std",
)


@dataclass
class TrainConfig:
    """Every setting of a training run. The model fields are ``GPTConfig``'s (``vocab_size`` comes from the data).

    ``data`` is "shakespeare" (the course corpus) or the path of a UTF-8 text file, modelled character by
    character. ``lr_decay_iters`` None means ``max_iters``; ``grad_clip`` 0 turns clipping off;
    ``optimizer`` is "torch" (``torch.optim.AdamW``, ``fused`` as given) or "mt" (``mt.AdamW``); ``dtype``
    "bfloat16" trains under autocast; ``device`` "auto" picks cuda, then mps, then cpu; ``threads`` 0
    leaves PyTorch's default; ``out_dir`` "" means ``runs/<preset>``. Under ``torchrun``, ``distributed``
    is "ddp" or "fsdp" and ``dist_timeout_s`` bounds every collective (a dead rank stops the run).
    """

    # the model (GPTConfig)
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
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
    vocab_size: int | None = None  # None: the data's; larger pads the embedding (GPT-2 uses 50304)
    # the data
    data: str = "shakespeare"
    val_fraction: float = 0.1
    # optimisation
    batch_size: int = 12
    grad_accum: int = 1
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    optimizer: str = "torch"
    fused: bool | None = None
    # evaluation and output
    eval_interval: int = 250
    eval_iters: int = 20
    eval_batch_size: int | None = None  # None: batch_size
    eval_seed: int = 1234
    sample_chars: int = 500
    sample_prompt: str = "\n"
    sample_temperature: float = 0.8
    sample_top_k: int | None = None
    out_dir: str = ""
    # the machine
    device: str = "auto"
    dtype: str = "float32"
    compile: bool = False
    threads: int = 0
    seed: int = 0
    # several processes (torchrun; chapter 13)
    distributed: str = "ddp"
    dist_timeout_s: float = 60.0

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def decay_iters(self) -> int:
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    @property
    def tokens_per_iter(self) -> int:
        return self.batch_size * self.block_size * self.grad_accum


PRESETS: dict[str, dict[str, Any]] = {
    # seconds on a laptop: the tests and the chapter's demonstrations use it
    "tiny": dict(
        block_size=16, n_layer=1, n_head=2, n_embd=16, batch_size=4, max_iters=20, warmup_iters=2, lr=3e-3,
        min_lr=3e-4, eval_interval=10, eval_iters=2, sample_chars=40, threads=1,
    ),
    # the benchmark of benchmarks/train_cpu.py (nanoGPT's CPU example): 4 x 128, block 64, batch 12, 2000 steps
    "bench": dict(
        block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, batch_size=12, max_iters=2000, lr=1e-3,
        min_lr=1e-4, warmup_iters=100, eval_interval=250, eval_iters=20, threads=2,
    ),
    # the best recipe found for the benchmark's budget: Llama-style blocks and a higher learning rate
    "bench-best": dict(
        block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, batch_size=12, max_iters=2000, lr=2e-3,
        min_lr=2e-4, warmup_iters=100, eval_interval=250, eval_iters=20, threads=2,
        pos="rope", mlp="swiglu", norm="rms", bias=False,
    ),
    # the course model shipped in checkpoints/ (a few minutes on a 2-core CPU; one thread copes best with a busy one)
    "cpu-char": dict(
        block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0, batch_size=12, max_iters=2000, lr=2e-3,
        min_lr=2e-4, warmup_iters=100, eval_interval=250, eval_iters=40, eval_batch_size=16, threads=1,
        pos="rope", mlp="swiglu", norm="rms", bias=False,
    ),
    # GPT-2 small's shape (124M parameters with its 50304-entry vocabulary) for a GPU (chapter 13)
    "gpt2-124m": dict(
        block_size=1024, n_layer=12, n_head=12, n_embd=768, vocab_size=50304, dropout=0.0, batch_size=16,
        grad_accum=32, max_iters=5000, lr=6e-4, min_lr=6e-5, warmup_iters=200, beta2=0.95, eval_interval=250,
        eval_iters=50, dtype="bfloat16", compile=True, fused=True,
    ),
}


def _close_match(name: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    name = {int: "an int", float: "a number", bool: "true or false", str: "a string"}[base]
    return name + (" or none" if type(None) in typing.get_args(tp) else "")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def parse_value(key: str, text: str) -> Any:
    """The typed value of ``--key=text`` for a ``TrainConfig`` field; a ``ConfigError`` if it does not parse."""
    types_ = _field_types()
    if key not in types_:
        raise ConfigError(
            f"unknown key {key!r}{_close_match(key, types_)}; valid keys: {', '.join(TrainConfig.keys())}"
        )
    tp = types_[key]
    args = typing.get_args(tp)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), tp)
    if optional and text.lower() in ("none", "null"):
        return None
    try:
        if base is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError
        if base is int:
            return int(text)
        if base is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        return text.replace("\\n", "\n") if key == "sample_prompt" else text  # --sample_prompt='ROMEO:\n' in a shell
    except ValueError:
        raise ConfigError(f"--{key}={text}: {key} must be {_type_name(tp)}") from None


def _check_type(key: str, value: Any) -> None:
    tp = _field_types()[key]
    args = typing.get_args(tp)
    allowed = tuple(a for a in args if a is not type(None)) if args else (tp,)
    if value is None and type(None) in args:
        return
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return
    if bool not in allowed and isinstance(value, bool) or not isinstance(value, allowed):
        raise ConfigError(f"{key}={value!r}: {key} must be {_type_name(tp)}")


def make_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """A ``TrainConfig`` from a preset (see ``PRESETS``; None: the defaults) with some fields replaced.

    Unknown keys and values of the wrong type raise a ``ConfigError`` naming the key and what it expects;
    so do values that cannot work (``validate``).
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}{_close_match(preset, PRESETS)}; presets: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset]) if preset else {}
    valid = set(TrainConfig.keys())
    for key, value in overrides.items():
        if key not in valid:
            raise ConfigError(
                f"unknown key {key!r}{_close_match(key, valid)}; valid keys: {', '.join(TrainConfig.keys())}"
            )
        values[key] = value
    for key, value in values.items():
        _check_type(key, value)
    config = TrainConfig(**values)
    if not config.out_dir:
        config.out_dir = str(Path("runs") / (preset or "default"))
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Raise a ``ConfigError`` for settings that cannot work (the data-dependent checks come in ``prepare_data``)."""
    for key in ("batch_size", "grad_accum", "eval_interval", "eval_iters"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{key} must be >= 1; got {getattr(config, key)}")
    for key in ("max_iters", "warmup_iters", "sample_chars", "threads"):
        if getattr(config, key) < 0:
            raise ConfigError(f"{key} must be >= 0; got {getattr(config, key)}")
    if config.eval_batch_size is not None and config.eval_batch_size < 1:
        raise ConfigError(f"eval_batch_size must be >= 1 or none; got {config.eval_batch_size}")
    if not config.warmup_iters <= config.decay_iters:
        raise ConfigError(
            f"warmup_iters ({config.warmup_iters}) must not exceed lr_decay_iters ({config.decay_iters})"
        )
    if not 0 <= config.min_lr <= config.lr:
        raise ConfigError(f"need 0 <= min_lr <= lr; got min_lr={config.min_lr}, lr={config.lr}")
    if not (0 <= config.beta1 < 1 and 0 <= config.beta2 < 1):
        raise ConfigError(f"beta1 and beta2 must be in [0, 1); got {config.beta1} and {config.beta2}")
    if config.weight_decay < 0 or config.grad_clip < 0:
        raise ConfigError("weight_decay and grad_clip must be >= 0")
    if not 0 < config.val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1); got {config.val_fraction}")
    if config.optimizer not in ("torch", "mt"):
        raise ConfigError(f"optimizer must be 'torch' or 'mt'; got {config.optimizer!r}")
    if config.optimizer == "mt" and config.fused:
        raise ConfigError("fused=true needs optimizer=torch (mt.AdamW is a plain loop)")
    if config.distributed not in dist_mt.STRATEGIES:
        raise ConfigError(f"distributed must be one of {', '.join(dist_mt.STRATEGIES)}; got {config.distributed!r}")
    if not config.dist_timeout_s > 0:
        raise ConfigError(f"dist_timeout_s must be > 0; got {config.dist_timeout_s}")
    if config.dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"dtype must be 'float32' or 'bfloat16'; got {config.dtype!r}")
    if config.device not in ("auto", "cpu", "cuda", "mps") and not config.device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {config.device!r}")
    if config.sample_temperature < 0:
        raise ConfigError(f"sample_temperature must be >= 0; got {config.sample_temperature}")
    try:  # the model's own checks (n_head divides n_embd, known norm/mlp/pos names, ...), with any vocabulary
        model_config(config, vocab_size=config.vocab_size or 1)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def model_config(config: TrainConfig, vocab_size: int) -> GPTConfig:
    """The ``GPTConfig`` of a run: its model fields and the vocabulary size (at least the data's)."""
    return GPTConfig(vocab_size=vocab_size, **{key: getattr(config, key) for key in MODEL_KEYS})


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA if present, else Apple's MPS, else the CPU; any other name is checked and returned."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use --device=cpu or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device={name} but MPS is not available here; use --device=cpu or auto")
    return device


# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """The character vocabulary and the encoded train/validation tokens of a run, with a fingerprint."""

    vocab: CharVocab
    train: torch.Tensor
    val: torch.Tensor
    sha256: str


@functools.lru_cache(maxsize=4)
def _load_text_data(source: str, val_fraction: float) -> Data:
    if source == "shakespeare":
        text = build_corpus()
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"data={source}: no such file (use 'shakespeare' or the path of a UTF-8 text file)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"data={source}: not a UTF-8 text file") from None
    if not text:
        raise ConfigError(f"data={source}: the text is empty")
    vocab = CharVocab.from_text(text)
    ids = torch.tensor(vocab.encode(text), dtype=torch.long)
    train, val = train_val_split(ids, val_fraction)
    return Data(vocab, train, val, hashlib.sha256(text.encode("utf-8")).hexdigest())


def prepare_data(config: TrainConfig) -> Data:
    """Load and split the run's text; a ``ConfigError`` if a window of ``block_size + 1`` tokens does not fit."""
    data = _load_text_data(config.data, config.val_fraction)
    for split, tokens in (("training", data.train), ("validation", data.val)):
        if config.block_size >= len(tokens):
            raise ConfigError(
                f"block_size={config.block_size} is longer than the {split} data ({len(tokens)} tokens; a window "
                f"needs block_size + 1): lower block_size, or use more text or another val_fraction"
            )
    if config.vocab_size is not None and config.vocab_size < data.vocab.size:
        raise ConfigError(f"vocab_size={config.vocab_size} is smaller than the data's {data.vocab.size} characters")
    return data


# ---------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------


def rng_state(data_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random stream the loop draws from: torch (dropout), CUDA, Python, NumPy, the batch sampler."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], data_generator: torch.Generator | None = None) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if data_generator is not None:
        data_generator.set_state(state["data"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)  # a crash while saving never leaves a half-written checkpoint behind


def _base_model(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # torch.compile wraps the model


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: TrainConfig,
    vocab: CharVocab,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    data_generator: torch.Generator | None = None,
    log: list[dict] | None = None,
    extra: dict[str, Any] | None = None,
    state: tuple[dict, dict] | None = None,
) -> Path:
    """Write a checkpoint: the weights, configs and vocabulary, and (to resume) the optimiser and random state.

    ``step`` is the number of optimiser steps taken so far. With ``optimizer=None`` only what inference
    needs is saved (``model.pt``, a few MB); with it, everything the next training step depends on.
    ``state``: (model, optimiser) state dicts to save instead of the objects' own (sharded training).
    """
    base = _base_model(model)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "model_config": base.config.to_dict(),
        "vocab": "".join(vocab.chars),
        "step": step,
        "model": base.state_dict() if state is None else state[0],
        "torch_version": str(torch.__version__),
        **(extra or {}),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict() if state is None else state[1]
        ckpt["rng"] = rng_state(data_generator)
        ckpt["log"] = log or []
    path = Path(path)
    _atomic_save(ckpt, path)
    return path


def _read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated file, or something else than a checkpoint
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise ConfigError(f"checkpoint {path}: cannot be read ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"checkpoint {path}: not a checkpoint written by mastering_transformers.train")
    return ckpt


def course_checkpoint(name: str = "shakespeare_char") -> Path:
    """The path of a model the course ships in ``checkpoints/`` (chapter 11 trains it; chapters 14-15 load it).

    Looked up in ``$MT_CHECKPOINTS`` if set, else in the repository's ``checkpoints/`` next to ``src/``.
    """
    roots = [Path(os.environ["MT_CHECKPOINTS"])] if os.environ.get("MT_CHECKPOINTS") else []
    roots += [Path(__file__).resolve().parents[2] / "checkpoints", Path.cwd() / "checkpoints",
              Path.cwd().parent / "checkpoints"]
    for root in roots:
        if (root / f"{name}.pt").is_file():
            return root / f"{name}.pt"
    raise FileNotFoundError(
        f"no checkpoint {name}.pt in {', '.join(str(r) for r in roots)}: the course model ships in the repository's "
        f"checkpoints/ folder (set MT_CHECKPOINTS to another folder)"
    )


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, dict[str, Any]]:
    """The trained model (in eval mode, on ``device``) and its metadata from a ``model.pt`` or ``ckpt.pt``.

    ``meta`` holds ``vocab`` (an ``mt.CharVocab``: ``vocab.decode(ids)``), ``config`` (the ``TrainConfig``),
    ``model_config`` (the ``GPTConfig``), ``step`` and whatever the run recorded (e.g. ``final_eval``).
    """
    ckpt = _read_checkpoint(path)
    model = GPT(GPTConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "rng")}
    meta["vocab"] = CharVocab(tuple(ckpt["vocab"]))
    meta["config"] = TrainConfig(**ckpt["config"])
    meta["model_config"] = GPTConfig.from_dict(ckpt["model_config"])
    return model, meta


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What ``train_gpt`` returns: the trained model, the log rows, the final evaluation and the sample."""

    model: GPT
    config: TrainConfig
    vocab: CharVocab
    log: list[dict] = field(default_factory=list)
    final_eval: dict[str, float] | None = None
    sample: str = ""
    wall_s: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def losses(self) -> list[float]:
        """The training loss of every optimiser step, in order."""
        return [row["loss"] for row in self.log if row["kind"] == "train"]

    @property
    def evals(self) -> list[dict]:
        return [row for row in self.log if row["kind"] == "eval"]


LOG_FIELDS = ("step", "kind", "lr", "loss", "val_loss", "grad_norm", "tokens_per_s", "elapsed_s")


def write_log_csv(log: list[dict], path: str | Path) -> Path:
    """The log as CSV, one row per training step (``kind`` "train") or evaluation (``kind`` "eval").

    A train row at ``step`` s is the update from s to s + 1 steps: its ``loss`` is the training batch's,
    ``lr`` the rate used, ``grad_norm`` the norm before clipping. An eval row at step s is measured after
    s updates: ``loss`` on fixed training windows, ``val_loss`` on fixed validation windows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for row in log:
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
    return path


def read_log_csv(path: str | Path) -> list[dict]:
    """``write_log_csv``'s file back as rows of numbers (empty cells become None)."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {"kind": raw["kind"], "step": int(raw["step"])}
            for key in LOG_FIELDS[2:]:
                row[key] = float(raw[key]) if raw.get(key) not in ("", None) else None
            rows.append(row)
    return rows


def plot_log(log: list[dict], path: str | Path | None = None, title: str = ""):
    """Training loss per step (faint), its running mean, and the evaluation losses; saved to ``path`` if given.

    Returns the matplotlib ``Figure`` (built without pyplot, so it works in scripts without a display).
    """
    from matplotlib.figure import Figure

    train = [(r["step"], r["loss"]) for r in log if r["kind"] == "train"]
    evals = [r for r in log if r["kind"] == "eval"]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, lw=0.8, label="training batch")
        w = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, color="tab:blue", label=f"training batch, mean of {w}")
    if evals:
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", color="tab:green", ms=3,
                label="train split (fixed windows)")
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "s-", color="tab:red", ms=3,
                label="validation split (fixed windows)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title(title or "Training and validation loss")
    ax.legend()
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def _build_optimizer(model: GPT, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    betas = (config.beta1, config.beta2)
    fused = config.fused
    if fused is None and config.optimizer == "torch":
        fused = device.type in ("cuda", "cpu")  # PyTorch's fused AdamW: one kernel for all parameters
    fused = fused if config.optimizer == "torch" else None
    torch_opt = model.configure_optimizer(config.weight_decay, config.lr, betas, fused=fused)
    if config.optimizer == "torch":
        return torch_opt
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in torch_opt.param_groups]
    return AdamW(groups, lr=config.lr, betas=betas, weight_decay=config.weight_decay)


def _check_resumable(ckpt: dict[str, Any], config: TrainConfig, data: Data, path: str | Path) -> None:
    if "optimizer" not in ckpt:
        raise ConfigError(f"checkpoint {path} holds the weights only (a model.pt): resume from the run's ckpt.pt")
    saved = ckpt["config"]
    for key in MODEL_KEYS + ("vocab_size", "data", "val_fraction", "optimizer"):
        if saved.get(key) != getattr(config, key):
            raise ConfigError(
                f"checkpoint {path} is from another config: it has {key}={saved.get(key)!r}, this run "
                f"{key}={getattr(config, key)!r}"
            )
    if ckpt["vocab"] != "".join(data.vocab.chars):
        raise ConfigError(f"checkpoint {path} was trained on another vocabulary than data={config.data}")
    if ckpt["step"] > config.max_iters:
        raise ConfigError(f"checkpoint {path} is at step {ckpt['step']}, beyond max_iters={config.max_iters}")


def train_gpt(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    stop_at: int | None = None,
    progress: bool = False,
    write_files: bool = True,
) -> TrainResult:
    """Train a GPT as ``config`` says; returns a ``TrainResult``.

    ``resume``: a ``ckpt.pt`` to continue from (same model, data and optimiser settings, else a
    ``ConfigError``). ``stop_at``: stop after that many optimiser steps, as if interrupted, leaving a
    checkpoint to resume from (the learning-rate schedule still runs to ``max_iters``). ``progress``: a
    tqdm bar with the loss and tokens/s. ``write_files``: write ``log.csv``, ``ckpt.pt`` (at each
    evaluation and at the end), ``model.pt``, ``loss.png`` and ``sample.txt`` into ``config.out_dir``.
    """
    validate(config)
    device = pick_device(config.device)  # "auto": cuda > mps > cpu
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    info, device = dist_mt.setup(device, config.dist_timeout_s)  # under torchrun: join the process group
    try:
        with dist_mt.collectives_guard(info, config.dist_timeout_s):
            return _train(config, device, resume, stop_at, progress and info.is_main, write_files, info)
    finally:
        dist_mt.teardown(info)
        torch.set_num_threads(threads_before)  # leave the process as we found it


def _train(
    config: TrainConfig, device: torch.device, resume, stop_at, progress: bool, write_files: bool,
    info: dist_mt.DistInfo = dist_mt.DistInfo(),
) -> TrainResult:
    data = prepare_data(config)
    vocab_size = config.vocab_size or data.vocab.size
    out_dir = Path(config.out_dir or "runs/default")
    ckpt_path, files = out_dir / "ckpt.pt", {}

    ckpt = None
    if resume is not None:
        ckpt = _read_checkpoint(resume)
        _check_resumable(ckpt, config, data, resume)

    torch.manual_seed(config.seed)  # the initial weights, then dropout
    random.seed(config.seed)
    np.random.seed(config.seed)
    model = GPT(model_config(config, vocab_size)).to(device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    write_files = write_files and info.is_main  # several processes: rank 0 writes
    if info.enabled and config.batch_size % info.world_size:  # the global batch is split over the ranks
        raise ConfigError(f"batch_size={config.batch_size} must be divisible by the {info.world_size} processes")
    wrapped = dist_mt.wrap_model(model, info, config.distributed)  # DDP, or FSDP2 shards model in place
    optimizer = _build_optimizer(model, config, device)
    batches = torch.Generator().manual_seed(config.seed + 1)  # the sampler of training windows: its own stream
    start, log, elapsed0 = 0, [], 0.0
    if ckpt is not None:
        dist_mt.load_optimizer_state(model, optimizer, ckpt["optimizer"], config.distributed)
        set_rng_state(ckpt["rng"], batches)
        start, log = ckpt["step"], list(ckpt["log"])
        elapsed0 = log[-1]["elapsed_s"] if log else 0.0
    end = config.max_iters if stop_at is None else min(stop_at, config.max_iters)
    if end < start:
        raise ConfigError(f"stop_at={stop_at} is before the checkpoint's step {start}")

    forward = torch.compile(wrapped) if config.compile else wrapped
    autocast = autocast_context(device, config.dtype)
    eval_batch = config.eval_batch_size or config.batch_size

    def run_eval(step: int, elapsed: float) -> dict:
        kw = dict(batch_size=eval_batch, block_size=config.block_size, n_batches=config.eval_iters,
                  seed=config.eval_seed, device=device, dtype=config.dtype)
        row = {"step": step, "kind": "eval", "loss": evaluate_loss(forward, data.train, **kw),
               "val_loss": evaluate_loss(forward, data.val, **kw), "elapsed_s": elapsed}
        log.append(row)
        return row

    def save(step: int) -> None:
        state = dist_mt.full_state(model, optimizer, config.distributed) if info.enabled else None  # all ranks
        if write_files:
            save_checkpoint(ckpt_path, model, config, data.vocab, step, optimizer, batches, log, state=state)
            files["ckpt"] = ckpt_path
            files["log"] = write_log_csv(log, out_dir / "log.csv")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        print(f"training {model.num_parameters():,} parameters ({config.n_layer} layers x {config.n_embd}) on "
              f"{device}, {config.tokens_per_iter:,} tokens per step, steps {start} to {end} of {config.max_iters}"
              f" -> {out_dir}", file=sys.stderr)

        bar = tqdm(total=config.max_iters, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)
    t_start = time.perf_counter()
    model.train()
    for step in range(start, end):
        elapsed = elapsed0 + time.perf_counter() - t_start
        evaluated = log and log[-1]["kind"] == "eval" and log[-1]["step"] == step  # (a resumed run may have)
        if step % config.eval_interval == 0 and not evaluated:
            row = run_eval(step, elapsed)
            save(step)
            if bar is not None:
                bar.write(f"step {step}: train {row['loss']:.4f}, val {row['val_loss']:.4f}", file=sys.stderr)
        lr = lr_at(step, config.lr, config.warmup_iters, config.decay_iters, config.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        micro = [get_batch(data.train, config.batch_size, config.block_size, device, generator=batches)
                 for _ in range(config.grad_accum)]
        if info.enabled:  # every rank drew the same global batch; each keeps its rows, DDP averages the gradients
            micro = [dist_mt.shard_batch(x, y, info) for x, y in micro]
            loss = dist_mt.all_reduce_mean(accumulate_gradients(forward, micro, autocast), info)
            norm = dist_mt.clip_grad_norm(model, config.grad_clip, config.distributed) if config.grad_clip > 0 else None
        else:
            loss = accumulate_gradients(forward, micro, autocast)
            norm = clip_grad_norm(model.parameters(), config.grad_clip) if config.grad_clip > 0 else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        row = {"step": step, "kind": "train", "lr": lr, "loss": loss,
               "grad_norm": None if norm is None else float(norm), "tokens_per_s": config.tokens_per_iter / dt,
               "elapsed_s": elapsed0 + time.perf_counter() - t_start}
        log.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}", tok_s=f"{row['tokens_per_s']:,.0f}", refresh=False)
        if not math.isfinite(loss):
            if bar is not None:
                bar.close()
            raise FloatingPointError(f"the training loss is {loss} at step {step}: lower lr, or check the data")
    if bar is not None:
        bar.close()

    final_eval = None
    if end == config.max_iters and (not log or log[-1]["kind"] != "eval"):
        row = run_eval(end, elapsed0 + time.perf_counter() - t_start)
        final_eval = {"step": end, "train_loss": row["loss"], "val_loss": row["val_loss"]}
    elif log and log[-1]["kind"] == "eval" and log[-1]["step"] == config.max_iters:
        final_eval = {"step": end, "train_loss": log[-1]["loss"], "val_loss": log[-1]["val_loss"]}
    save(end)
    wall = elapsed0 + time.perf_counter() - t_start

    sample = ""
    if end == config.max_iters and config.sample_chars:
        sample = generate_text(model, data.vocab, config.sample_prompt, config.sample_chars,
                               temperature=config.sample_temperature, top_k=config.sample_top_k, seed=config.seed)
    final_state = None
    if info.enabled and end == config.max_iters:  # every rank takes part in gathering FSDP's shards
        final_state = dist_mt.full_state(model, optimizer, config.distributed)
    if write_files and end == config.max_iters:
        eval_info = {"final_eval": final_eval, "eval_settings": eval_settings(config), "data_sha256": data.sha256}
        files["model"] = save_checkpoint(out_dir / "model.pt", model, config, data.vocab, end, extra=eval_info,
                                         state=final_state)
        files["plot"] = out_dir / "loss.png"
        plot_log(log, files["plot"], title=f"{out_dir.name}: final validation loss "
                 f"{final_eval['val_loss']:.3f}" if final_eval else out_dir.name)
        (out_dir / "sample.txt").write_text(sample, encoding="utf-8")
        files["sample"] = out_dir / "sample.txt"
    return TrainResult(model=model, config=config, vocab=data.vocab, log=log, final_eval=final_eval,
                       sample=sample, wall_s=wall, files=files)


def eval_settings(config: TrainConfig) -> dict[str, Any]:
    """What ``evaluate_loss`` needs to reproduce a run's recorded validation loss (stored in ``model.pt``)."""
    return {"batch_size": config.eval_batch_size or config.batch_size, "block_size": config.block_size,
            "n_batches": config.eval_iters, "seed": config.eval_seed, "dtype": config.dtype,
            "data": config.data, "val_fraction": config.val_fraction}


def generate_text(
    model: GPT, vocab: CharVocab, prompt: str = "\n", n_chars: int = 500, temperature: float = 0.8,
    top_k: int | None = None, seed: int = 0,
) -> str:
    """``n_chars`` characters sampled after ``prompt`` (which is included), reproducibly (``seed``)."""
    device = next(model.parameters()).device
    idx = torch.tensor([vocab.encode(prompt or "\n")], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, n_chars, temperature=temperature, top_k=top_k, generator=generator)
    return vocab.decode(out[0].tolist())


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

USAGE = """usage: python -m mastering_transformers.train [--preset NAME] [--resume PATH] [--stop_at N] [--key=value ...]

Train a character-level GPT. Presets: {presets}.
Keys (--key=value): {keys}.
Example: python -m mastering_transformers.train --preset tiny --max_iters=50 --device=cpu"""


def parse_args(argv: Sequence[str]) -> tuple[str | None, dict[str, Any], str | None, int | None, bool]:
    """Split the command line into (preset, overrides, resume path, stop_at, help wanted)."""
    preset, overrides, resume, stop_at = None, {}, None, None
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            return preset, overrides, resume, stop_at, True
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: settings are written --key=value")
        key, eq, value = arg[2:].partition("=")
        if key in ("preset", "resume", "stop_at") and not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key} needs a value")
            value, i = args[i + 1], i + 1
        elif not eq:
            raise ConfigError(f"{arg}: settings are written --key=value")
        if key == "preset":
            preset = value
        elif key == "resume":
            resume = value
        elif key == "stop_at":
            try:
                stop_at = int(value)
            except ValueError:
                raise ConfigError(f"--stop_at={value}: stop_at must be an int") from None
        else:
            overrides[key.replace("-", "_")] = parse_value(key.replace("-", "_"), value)
        i += 1
    return preset, overrides, resume, stop_at, False


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 1 a rank failed, 2 bad settings, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else argv
    config = None
    try:
        preset, overrides, resume, stop_at, want_help = parse_args(argv)
        if want_help:
            print(USAGE.format(presets=", ".join(PRESETS), keys=", ".join(TrainConfig.keys())))
            return 0
        if resume is not None and preset is None:
            saved = _read_checkpoint(resume)["config"]  # continue the run as it was configured
            config = make_config(None, **{**saved, **overrides})
        else:
            config = make_config(preset, **overrides)
        result = train_gpt(config, resume=resume, stop_at=stop_at, progress=True)
    except ConfigError as error:
        print(f"train: error: {error}", file=sys.stderr)
        return 2
    except dist_mt.RankFailure as error:  # several processes: another rank died or hung
        print(f"train: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = f" with --resume {Path(config.out_dir) / 'ckpt.pt'}" if config is not None else ""
        print(f"train: interrupted; continue from the last checkpoint{where}", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 reports
        return 0
    if result.final_eval:
        print(f"final: train loss {result.final_eval['train_loss']:.4f}, val loss {result.final_eval['val_loss']:.4f}, "
              f"{result.wall_s:.1f} s; files in {config.out_dir}", file=sys.stderr)
    else:
        print(f"stopped at step {stop_at}; resume with --resume {result.files.get('ckpt')}", file=sys.stderr)
    if result.sample:
        print(result.sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
