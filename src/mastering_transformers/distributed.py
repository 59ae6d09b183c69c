"""Data-parallel training on several processes: DDP and FSDP2 under ``torchrun`` (chapter 13).

Every process (a *rank*) holds the model, draws the *same* global batch from the same seeded generator
and keeps only its slice of rows (``local_rows``); after the backward pass the gradients are averaged
over the ranks (an all-reduce), so every rank applies the update of the mean loss over the whole global
batch: the same step, up to the order of floating-point additions, as one process would take on it.

* DDP (``torch.nn.parallel.DistributedDataParallel``) keeps a full copy of weights, gradients and optimiser
  state on every rank and all-reduces gradients in buckets while the backward pass still runs.
* FSDP2 (``torch.distributed.fsdp.fully_shard``) shards the parameters, gradients and optimiser state
  over the ranks (each holds 1/W of them), gathers a block's weights just before it runs and
  reduce-scatters its gradients after: memory per rank falls by about W for the 16 bytes per parameter.

``mt.train`` calls ``setup`` when it finds torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``)::

    torchrun --nproc_per_node=2 -m mastering_transformers.train --preset tiny --device=cpu [--distributed=fsdp]

With ``grad_accum`` > 1 the trainer's accumulation runs unchanged, so DDP all-reduces after every micro-batch:
the result is the same, but skipping all but the last all-reduce (DDP's ``no_sync``) would save communication.

The backend is NCCL on CUDA and gloo on the CPU. Collectives time out after ``timeout_s`` seconds, and a
failed or timed-out collective becomes a ``RankFailure`` with a message that says which rank saw what,
so a rank that dies ends the run instead of leaving the others waiting forever.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

STRATEGIES = ("ddp", "fsdp")


class RankFailure(RuntimeError):
    """A collective failed or timed out: another rank died, hung or disagrees. The run cannot continue."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine, the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: not distributed
    owns_group: bool = False  # True when ``setup`` created the process group (and ``teardown`` destroys it)

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the files, the log and the progress bar."""
        return self.rank == 0


def launched_by_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """True when the environment holds a distributed launch (``WORLD_SIZE`` and ``RANK``, as torchrun sets)."""
    env = os.environ if env is None else env
    return "WORLD_SIZE" in env and "RANK" in env


def setup(device: torch.device, timeout_s: float = 60.0) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes; returns (``DistInfo``, the device this rank should use).

    Outside torchrun (no ``WORLD_SIZE``/``RANK``) returns a non-distributed ``DistInfo`` and ``device``. On
    CUDA each rank takes GPU ``LOCAL_RANK`` and NCCL; elsewhere gloo. If a group already exists (a caller
    initialised it) it is used as it is and left to its owner.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive; got {timeout_s}")
    if not (dist.is_available() and (dist.is_initialized() or launched_by_torchrun())):
        return DistInfo(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(), owns)
    return info, device


def teardown(info: DistInfo) -> None:
    """Leave the process group if ``setup`` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def local_rows(global_batch: int, info: DistInfo) -> slice:
    """The rows of a global batch this rank trains on: rank r of W takes rows [r B/W, (r+1) B/W)."""
    if global_batch % info.world_size:
        raise ValueError(
            f"batch_size={global_batch} must be divisible by the number of processes ({info.world_size}) so "
            f"that each trains on equally many rows"
        )
    per_rank = global_batch // info.world_size
    return slice(info.rank * per_rank, (info.rank + 1) * per_rank)


def shard_batch(x: torch.Tensor, y: torch.Tensor, info: DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of a global batch (x (B, T), y (B, T)) -> (B/W, T) each."""
    rows = local_rows(x.shape[0], info)
    return x[rows], y[rows]


def wrap_model(model: nn.Module, info: DistInfo, strategy: str = "ddp") -> nn.Module:
    """The module to run forward/backward through: ``model`` itself, DDP around it, or ``model`` sharded.

    ``strategy`` "ddp" returns a ``DistributedDataParallel`` wrapper (``model`` keeps the parameters);
    "fsdp" applies ``fully_shard`` to each block and then to the whole model *in place* (the parameters
    become ``DTensor`` shards, so build the optimiser after this call) and returns ``model``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
    if not info.enabled:
        return model
    if strategy == "ddp":
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard

    for block in getattr(model, "blocks", []):
        fully_shard(block)
    fully_shard(model)
    return model


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """The mean of a number over the ranks (each rank passes its own; all get the mean)."""
    if not info.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    if info.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size


def average_gradients(model: nn.Module, info: DistInfo) -> None:
    """By hand, what DDP does: replace each gradient by its mean over the ranks (sum all-reduce, / W)."""
    if not info.enabled:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(info.world_size)


def clip_grad_norm(model: nn.Module, max_norm: float, strategy: str) -> torch.Tensor:
    """The global gradient norm before clipping, clipped to ``max_norm``, for a wrapped or sharded model.

    Under DDP every rank holds the full averaged gradients, so the course's ``mt.clip_grad_norm`` applies
    as in one process; under FSDP the gradients are shards and torch's clipping sums their squares over
    the ranks (the returned norm is the full one).
    """
    if strategy == "fsdp":
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    from .optim import clip_grad_norm as mt_clip

    return mt_clip(model.parameters(), max_norm)


def _fqns(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each parameter in the optimiser's order (how ``state_dict`` numbers them: group by group)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, strategy: str) -> tuple[dict, dict]:
    """The unsharded model and optimiser state dicts in the single-process format (every rank must call).

    Under DDP they are the local ones (every rank holds everything). Under FSDP the shards are gathered
    (``torch.distributed.checkpoint.state_dict``) and the optimiser's state is keyed by parameter index
    as ``torch.optim`` saves it, so a checkpoint resumes on any number of processes, or on one.
    """
    if strategy != "fsdp" or not _is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    model.reshard()  # after a forward without backward (evaluation, generation) the root is still gathered
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=options)
    if not optimizer.state:  # before the first step; (torch would initialise the state with a step of its own)
        return model_sd, optimizer.state_dict()
    osd = get_optimizer_state_dict(model, optimizer, options=options)
    if not osd:  # with cpu_offload only rank 0 receives the gathered state; it is the one that writes
        return model_sd, {}
    index = {name: i for i, name in enumerate(_fqns(model, optimizer))}
    state = {index[name]: value for name, value in osd["state"].items()}
    groups = [{**g, "params": [index[name] for name in g["params"]]} for g in osd["param_groups"]]
    return model_sd, {"state": state, "param_groups": groups}


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], strategy: str
) -> None:
    """Load a single-process optimiser state dict (``full_state``'s format) into a possibly sharded optimiser."""
    if strategy != "fsdp" or not _is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = _fqns(model, optimizer)
    osd = {
        "state": {names[i]: value for i, value in state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))


def _is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def collectives_guard(info: DistInfo, timeout_s: float):
    """Turn a failed or timed-out collective into a ``RankFailure`` that names this rank and the likely cause."""
    try:
        yield
    except RankFailure:
        raise
    except RuntimeError as error:
        text = str(error)
        dist_error = isinstance(error, getattr(dist, "DistError", ())) or any(
            word in text for word in ("gloo", "nccl", "NCCL", "Connection", "connection", "timed out", "Timeout")
        )
        if not (info.enabled and dist_error):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RankFailure(
            f"rank {info.rank} of {info.world_size}: a collective operation failed ({type(error).__name__}: "
            f"{first[:300]}); another process probably died or stopped answering (timeout {timeout_s:g} s), "
            f"so the run is stopped"
        ) from error
