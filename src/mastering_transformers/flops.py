"""Where the compute and the memory of training go: FLOPs, MFU and bytes in closed form (chapter 13).

Compute. A matrix product (m, k) @ (k, n) costs 2 m k n floating-point operations (a multiply and an add
per term). Every weight matrix of a GPT meets every token once in the forward pass, so the forward costs
2 FLOPs per weight per token; the backward pass costs twice that (one product for the gradient of the
input, one for the gradient of the weight). With N the number of weights used in matrix products and
attention over T positions::

    training FLOPs per token = 6 N  +  12 n_layer T C        (forward 2 N + 4 n_layer T C, backward twice that)

The second term is attention's two products, Q K^T and A V, each 2 T C per token and per layer; it counts
the full T x T square, as PaLM's appendix B and nanoGPT's ``estimate_mfu`` do (a causal kernel can skip
about half of it). ``count_flops`` measures the same quantity with ``torch.utils.flop_counter``.

Utilisation. MFU (model FLOPs utilisation, Chowdhery et al. 2022) = achieved model FLOPs per second divided
by the hardware's peak: ``tokens_per_s * flops_per_token / peak_flops``. Work the model did not need
(recomputation under activation checkpointing) does not count.

Memory. Training with AdamW in float32 keeps per parameter 4 bytes of weight, 4 of gradient and 8 of
optimiser state (the two moments): 16 bytes, whatever the batch. Activations, what autograd keeps for the
backward pass, grow with batch x sequence: ``activation_elements`` counts them for the GPT-2-style block
of ``mt.GPT``; ``saved_activation_bytes`` measures them; ``checkpoint_blocks`` trades them for recompute.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .gpt import GPT, GPTConfig
from .mlp import swiglu_hidden_size

# Dense (no sparsity) peak throughput of one accelerator from its vendor's data sheet, in FLOP/s.
# These are specifications, not measurements: MFU divides by them.
PEAK_FLOPS: dict[str, float] = {
    "H100-SXM-bf16": 989.4e12,
    "H200-bf16": 989.4e12,
    "A100-bf16": 312e12,
    "H100-SXM-fp32": 66.9e12,
}


def _config(config: GPTConfig | GPT | Mapping[str, Any]) -> GPTConfig:
    if isinstance(config, GPT):
        return config.config
    if isinstance(config, Mapping):
        return GPTConfig.from_dict(config)
    if not isinstance(config, GPTConfig):
        raise TypeError(f"expected a GPTConfig, a GPT or a dict of GPTConfig fields; got {type(config).__name__}")
    return config


def _d_ff(c: GPTConfig) -> int:
    if c.d_ff is not None:
        return c.d_ff
    return 4 * c.n_embd if c.mlp == "gelu" else swiglu_hidden_size(c.n_embd)


def matmul_params(config: GPTConfig | GPT | Mapping[str, Any]) -> int:
    """N: the weights that multiply activations in a matrix product, per token (biases and gains excluded).

    Per layer: W_Q (C x C), W_K and W_V (C x kv each, kv = n_kv_head * head size), W_O (C x C), and the
    MLP's 2 (GELU) or 3 (SwiGLU) matrices of C x d_ff; then the output head (V x C). The token embedding is
    a lookup (no FLOPs); when it is tied to the head, the one matrix is counted once, as the head.
    """
    c = _config(config)
    kv = (c.n_kv_head or c.n_head) * c.head_size
    attn = c.n_embd * (c.n_embd + 2 * kv) + c.n_embd * c.n_embd
    mlp = (2 if c.mlp == "gelu" else 3) * c.n_embd * _d_ff(c)
    return c.n_layer * (attn + mlp) + c.vocab_size * c.n_embd


def flops_per_token(
    config: GPTConfig | GPT | Mapping[str, Any], seq_len: int | None = None, training: bool = True
) -> int:
    """FLOPs per token of a forward (``training=False``: 2 N + 4 L T C) or a training step (6 N + 12 L T C).

    ``seq_len`` T defaults to ``block_size``. L is ``n_layer``, C ``n_embd``, N ``matmul_params``. Attention
    is counted over the full T x T square (what a non-causal kernel and ``torch.utils.flop_counter`` count).
    """
    c = _config(config)
    t = c.block_size if seq_len is None else seq_len
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"seq_len must be a positive int; got {seq_len!r}")
    forward = 2 * matmul_params(c) + 4 * c.n_layer * t * c.n_embd
    return 3 * forward if training else forward


def count_flops(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor | None = None, backward: bool = True) -> int:
    """Matrix-product FLOPs of one forward (and backward) pass of ``model(idx, targets)``, counted by PyTorch.

    Uses ``torch.utils.flop_counter.FlopCounterMode``, which counts mm/addmm/bmm and attention kernels and
    nothing else (norms, softmax and activations are cheap next to them). Attention runs on SDPA's math
    path inside the count: the counter does not know the CPU's fused flash kernel. Gradients are zeroed.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(idx, idx if targets is None and backward else targets)
        if backward:
            loss.backward()
    if backward:
        model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: the fraction of the peak that the model's own arithmetic used.

    ``tokens_per_s * flops_per_token / peak_flops``, with ``flops_per_token`` the training cost per token
    (``flops_per_token(config)``) and ``peak_flops`` the device's dense peak in FLOP/s (``PEAK_FLOPS``).
    """
    if peak_flops <= 0 or tokens_per_s < 0 or flops_per_token < 0:
        raise ValueError("need peak_flops > 0 and non-negative tokens_per_s and flops_per_token")
    return tokens_per_s * flops_per_token / peak_flops


def expected_tokens_per_s(flops_per_token: float, peak_flops: float, mfu: float = 0.5) -> float:
    """The throughput a run at utilisation ``mfu`` reaches: ``mfu * peak_flops / flops_per_token`` tokens/s."""
    if flops_per_token <= 0 or not 0 < mfu <= 1:
        raise ValueError(f"need flops_per_token > 0 and 0 < mfu <= 1; got {flops_per_token}, {mfu}")
    return mfu * peak_flops / flops_per_token


# ---------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------


def activation_elements(config: GPTConfig | GPT | Mapping[str, Any], batch_size: int, seq_len: int) -> int:
    """Numbers autograd keeps for the backward pass of ``mt.GPT`` (GPT-2 style, SDPA, no dropout), counted.

    Per token and per layer, reading the code: each of the two LayerNorms keeps x - mean, the normalised
    x, its input and 1 / std (3 C + 1); attention keeps its input (C), Q, K, V (3 C), its output (C) and one
    log-sum-exp per head (H) - the fused kernel keeps no T x T matrix; the MLP keeps its input (C) and four
    d_ff-wide tensors (the product, GELU's two intermediates, GELU's output). Then the final LayerNorm
    (3 C + 1), the head's input (C), the logits (V) and the int64 targets (2 float32 slots); and one scalar::

        B T [ L (12 C + 4 d_ff + H + 2) + 4 C + V + 3 ] + 1

    Written for ``norm="layer", mlp="gelu"`` and learned or sinusoidal positions; other choices raise.
    """
    c = _config(config)
    if c.norm != "layer" or c.mlp != "gelu" or c.pos not in ("learned", "sinusoidal") or c.attn_backend != "sdpa":
        raise ValueError(
            "activation_elements counts the GPT-2-style block (norm='layer', mlp='gelu', pos learned or "
            f"sinusoidal, attn_backend='sdpa'); got norm={c.norm!r}, mlp={c.mlp!r}, pos={c.pos!r}, "
            f"attn_backend={c.attn_backend!r}: measure it with saved_activation_bytes"
        )
    per_layer = 12 * c.n_embd + 4 * _d_ff(c) + c.n_head + 2
    return batch_size * seq_len * (c.n_layer * per_layer + 4 * c.n_embd + c.vocab_size + 3) + 1


def saved_activation_bytes(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor | None = None) -> int:
    """Bytes of the tensors autograd saves during ``model(idx, targets)``, each storage once, parameters excluded.

    A measurement, through ``torch.autograd.graph.saved_tensors_hooks``: every tensor an operation keeps
    for the backward pass goes through the hook. Views of one storage count once. The graph is freed.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(idx, idx if targets is None else targets)
    del loss
    return sum(seen.values())


def training_memory(
    config: GPTConfig | GPT | Mapping[str, Any],
    batch_size: int,
    seq_len: int | None = None,
    bytes_per_param: int = 4,
    bytes_per_grad: int = 4,
    bytes_per_optim_state: int = 8,
    bytes_per_activation: int = 4,
) -> dict[str, int]:
    """Bytes of a training step with AdamW in closed form: weights, gradients, optimiser state, activations.

    P parameters (a tied matrix once) cost P * (4 + 4 + 8) bytes in float32 with AdamW (two moments of 4
    bytes each). Activations are ``activation_elements`` x ``bytes_per_activation``. Returns a dict with
    keys "weights", "grads", "optimizer", "activations", "total" (bytes).
    """
    c = _config(config)
    t = c.block_size if seq_len is None else seq_len
    with torch.device("meta"):  # count the parameters without allocating them
        n = GPT(c).num_parameters()
    out = {
        "weights": n * bytes_per_param,
        "grads": n * bytes_per_grad,
        "optimizer": n * bytes_per_optim_state,
        "activations": activation_elements(c, batch_size, t) * bytes_per_activation,
    }
    out["total"] = sum(out.values())
    return out


def tensor_bytes(tensors) -> int:
    """Bytes held by an iterable of tensors (or a dict/list nesting them), each storage counted once."""
    seen: dict[int, int] = {}

    def visit(x):
        if isinstance(x, torch.Tensor):
            seen[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        elif isinstance(x, Mapping):
            for v in x.values():
                visit(v)
        elif isinstance(x, (list, tuple)) or hasattr(x, "__iter__") and not isinstance(x, (str, bytes)):
            for v in x:
                visit(v)

    visit(tensors)
    return sum(seen.values())


# ---------------------------------------------------------------------------------------------------
# Activation checkpointing
# ---------------------------------------------------------------------------------------------------


def _checkpointed_forward(block: nn.Module, original, *args, **kwargs):
    if not torch.is_grad_enabled():
        return original(*args, **kwargs)
    return checkpoint(original, *args, use_reentrant=False, **kwargs)


def checkpoint_blocks(model: GPT, enabled: bool = True) -> GPT:
    """Activation checkpointing of every block of ``model`` (in place; returns it); ``enabled=False`` undoes it.

    A checkpointed block keeps only its input during the forward pass and runs its forward again during
    the backward pass to rebuild what it needs: activation memory falls from about L blocks' worth to one
    block's worth plus L inputs, for one extra forward of the blocks (about a third more compute).
    The parameters and the state dict are unchanged.
    """
    for block in model.blocks:
        if "forward" in block.__dict__:  # already wrapped: unwrap first
            del block.forward
        if enabled:
            block.forward = functools.partial(_checkpointed_forward, block, block.forward)
    return model
