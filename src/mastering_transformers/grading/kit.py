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


def expect_int(value, what: str) -> int:
    """``value`` if it is a Python int (a bool, float, numpy or tensor number fails), else a failed assertion."""
    assert isinstance(value, int) and not isinstance(value, bool), (
        f"{what} must be a Python int, as the task says; got {type(value).__name__} {value!r} (use int(...) or "
        "integer arithmetic: // instead of /)"
    )
    return value


def _as_outputs(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def gradient_gap(fn, args: tuple, wrt: tuple[int, ...], seed: int, kwargs: dict | None = None,
                 directions: int = 2, eps: float = 1e-3) -> float | None:
    """Largest relative gap between the student's own gradients and finite differences of the student's own
    function: autograd's vector-Jacobian product (``fn.vjp``, run in the worker) against central differences of
    ``fn`` along random directions, with random cotangents for every tensor output.

    Only the gradient is judged, not the forward value: a forward bug is the other checks' business, while a
    ``.detach()``, ``.data``, ``.item()`` or ``torch.no_grad()`` between an input and the output shows up here.
    ``args[i]`` for ``i`` in ``wrt`` must be float64 tensors. None when the output is not finite (nothing to
    compare) or holds no tensor. The step ``eps`` is large enough that a function computing in float32 inside
    still gives clean differences, and small enough that the curvature error stays far below the tolerances used.
    """
    kwargs = dict(kwargs or {})
    g = torch.Generator().manual_seed(seed)
    outs = _as_outputs(fn(*args, **kwargs))
    if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
        return None
    if not all(bool(torch.isfinite(o).all()) for o in outs if o.is_floating_point()):
        return None
    cotangents = [torch.randn(o.shape, generator=g, dtype=torch.float64) if o.is_floating_point() else None
                  for o in outs]
    _, grads = fn.vjp(tuple(args), cotangents, wrt=tuple(wrt), kwargs=kwargs)
    grads = list(grads)

    def pairing(values) -> float:
        total = 0.0
        for o, c in zip(_as_outputs(values), cotangents):
            if c is not None:
                total += float((o.double() * c).sum())
        return total

    worst = 0.0
    for _ in range(directions):
        moves = {i: torch.randn(args[i].shape, generator=g, dtype=torch.float64) for i in wrt}
        plus = [a + eps * moves[i] if i in moves else a for i, a in enumerate(args)]
        minus = [a - eps * moves[i] if i in moves else a for i, a in enumerate(args)]
        numeric = (pairing(fn(*plus, **kwargs)) - pairing(fn(*minus, **kwargs))) / (2 * eps)
        analytic = 0.0
        for i, grad in zip(wrt, grads):
            if grad is not None:
                assert isinstance(grad, torch.Tensor) and tuple(grad.shape) == tuple(args[i].shape), (
                    f"the gradient with respect to argument {i} has the wrong shape"
                )
                analytic += float((grad.double() * moves[i]).sum())
        worst = max(worst, abs(numeric - analytic) / max(1.0, abs(numeric)))
    return worst


def assert_gradients_flow(fn, cases, wrt: tuple[int, ...], what: str, seed: int, kwargs: dict | None = None,
                          tolerance: float = 2e-3) -> None:
    """``gradient_gap`` below ``tolerance`` for every ``args`` tuple in ``cases``, at least one of them finite."""
    checked = 0
    for k, args in enumerate(cases):
        gap = gradient_gap(fn, args, wrt, seed + k, kwargs)
        if gap is None:
            continue
        checked += 1
        assert gap < tolerance, (
            f"the gradient of {what} that autograd computes through your code differs from finite differences of "
            f"your own function (relative gap {gap:.2g}): a chapter trains through this function, so no "
            ".detach(), .data, .item(), numpy or torch.no_grad() between the inputs and the output"
        )
    assert checked, f"{what} gave NaN or inf for every input of this check, so its gradient cannot be checked"
