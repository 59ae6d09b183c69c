"""Helpers the hidden-check files share: errors against references, typed results, recording callables.

A check receives plain tensors from the student's function (see ``checker``), so these work on ordinary
tensors. Every comparison counts a NaN as an infinite error: a NaN must never pass a check.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def largest(t: torch.Tensor) -> float:
    """max |t| as a float, NaN counted as inf."""
    if t.numel() == 0:
        return 0.0
    return float(t.detach().abs().nan_to_num(nan=float("inf"), posinf=float("inf")).max())


def expect_tensor(value, what: str, shape: tuple | None = None) -> torch.Tensor:
    """``value`` if it is a tensor (of exactly ``shape``, size-1 dims included), else a failed assertion."""
    assert isinstance(value, torch.Tensor), f"{what} must be a tensor; got {type(value).__name__}"
    if shape is not None:
        assert tuple(value.shape) == tuple(shape), f"{what} must have shape {tuple(shape)}; got {tuple(value.shape)}"
    return value


def max_error(x, reference: torch.Tensor, what: str = "the result") -> float:
    """Largest absolute difference from ``reference`` after checking the type and the exact shape."""
    expect_tensor(x, what, tuple(reference.shape))
    return largest(x.double() - reference.double())


class Recorder:
    """A function that remembers every input it was called with (a check passes it as an argument: the
    student's code calls it back, and the check then looks at what it was given)."""

    def __init__(self, fn: Callable):
        self.fn, self.inputs = fn, []

    def __call__(self, h):
        self.inputs.append(h)
        return self.fn(h)


def block_parts(seed: int, c: int):
    """(norm1, norm2, attn, mlp) for the block checks: LayerNorms with random weights and random linear
    and nonlinear sublayers of width ``c``, in float64, all functions of the last dim."""
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    w1, b1, w2, b2 = 1 + 0.3 * r(c), r(c), 1 + 0.3 * r(c), r(c)
    a, m1, m2 = r(c, c) / c**0.5, r(2 * c, c) / c**0.5, r(c, 2 * c) / (2 * c) ** 0.5

    def norm1(h):
        return F.layer_norm(h, (c,), w1, b1)

    def norm2(h):
        return F.layer_norm(h, (c,), w2, b2)

    def attn(h):
        return torch.tanh(h @ a.T) + 0.5

    def mlp(h):
        return F.gelu(h @ m1.T) @ m2.T - 0.3

    return norm1, norm2, attn, mlp


def block_input(seed: int, shape: tuple) -> torch.Tensor:
    """A block input far from normalised (mean 1, spread 3), in float64."""
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(*shape, generator=g, dtype=torch.float64) + 1
