"""Shape tracing and parameter counting: what every module of a model receives, returns and owns (chapter 4).

    >>> result = mt.trace(model, x)
    >>> print(result)          # one row per module call: name, class, input shapes, output shapes, params

Forward hooks record each call, in the order the calls start, without changing what the model computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Shape = tuple[int, ...]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` and its submodules; a tied (shared) tensor counts once."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"count_parameters expects an nn.Module; got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _shapes(obj: Any) -> list[Shape]:
    """The shapes of every tensor inside obj (nested tuples, lists, dicts), in order; None and the rest skipped."""
    if isinstance(obj, torch.Tensor):
        return [tuple(obj.shape)]
    if isinstance(obj, (tuple, list)):
        return [s for item in obj for s in _shapes(item)]
    if isinstance(obj, dict):
        return [s for item in obj.values() for s in _shapes(item)]
    return []


def _fmt(shapes: list[Shape]) -> str:
    return " ".join(str(s) for s in shapes) or "-"  # Python's tuple syntax: (100,) is 1-D


@dataclass
class TraceRow:
    """One call of one module. ``params`` counts the parameters first seen at this row (see ``trace``)."""

    name: str  # qualified name as in model.named_modules(); "" for the model itself
    kind: str  # class name
    inputs: list[Shape]  # shapes of the tensors passed in (positional, then keyword)
    outputs: list[Shape] = field(default_factory=list)  # shapes of the tensors returned
    params: int = 0
    call: int = 1  # 1 for the module's first call, 2 for its second, ...
    depth: int = 0  # how many module calls enclose this one: 0 for the model, 1 for what it calls, ...
    parent: int | None = None  # index of the enclosing call's row


@dataclass
class Trace:
    """The result of ``trace``: ``rows`` in call order and the model's ``output``. Prints as a table."""

    rows: list[TraceRow]
    output: Any = None

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    def table(self, max_depth: int | None = None) -> str:
        """A text table of the rows down to nesting level ``max_depth`` (all if None)."""
        header = ("module", "class", "input shapes", "output shapes", "params")
        lines = []
        for r in self.rows:
            if max_depth is not None and r.depth > max_depth:
                continue
            outer = self.rows[r.parent].name if r.parent is not None else ""
            label = r.name[len(outer) + 1 :] if outer and r.name.startswith(outer + ".") else r.name or "(model)"
            label = "  " * r.depth + label + (f" [call {r.call}]" if r.call > 1 else "")
            lines.append((label, r.kind, _fmt(r.inputs), _fmt(r.outputs), f"{r.params:,}"))
        lines.append(("total", "", "", "", f"{self.total_params:,}"))
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

        def render(row):
            cells = [c.ljust(w) for c, w in zip(row[:-1], widths)] + [row[-1].rjust(widths[-1])]
            return "  ".join(cells).rstrip()

        rule = "-" * len(render(header))
        return "\n".join([render(header), rule, *map(render, lines[:-1]), rule, render(lines[-1])])

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return self.table()


def trace(model: nn.Module, *inputs: Any, **kwargs: Any) -> Trace:
    """Run ``model(*inputs, **kwargs)`` once and record every module call: (name, class, shapes, params).

    A row's ``params`` are the parameters the module holds directly, plus those of any submodule that
    was never called as a module (``nn.MultiheadAttention`` uses its ``out_proj`` weights inside its own
    forward), counting each tensor once: at its first row. So ``total_params`` equals
    ``count_parameters(model)`` whenever every parameter sits in a module the forward reached.
    Modules that take a fused fast path (``nn.TransformerEncoderLayer`` in eval mode under
    ``torch.no_grad()``) never call their submodules, which then get no row.
    The hooks are removed afterwards, also when the forward raises.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace expects an nn.Module; got {type(model).__name__}")
    rows: list[TraceRow] = []
    stack: list[int] = []  # rows of the calls in progress, outermost first
    calls: dict[int, int] = {}
    names: dict[int, str] = {}
    row_module: list[nn.Module] = []  # the module of each row

    def before(module, args, kw):
        key = id(module)
        calls[key] = calls.get(key, 0) + 1
        parent = stack[-1] if stack else None
        shapes = _shapes(args) + _shapes(kw)
        row = TraceRow(names[key], type(module).__name__, shapes, call=calls[key], depth=len(stack), parent=parent)
        rows.append(row)
        row_module.append(module)
        stack.append(len(rows) - 1)

    def after(module, args, kw, out):
        rows[stack.pop()].outputs = _shapes(out)

    handles = []
    try:
        for name, module in model.named_modules():  # a module registered twice keeps its first name
            names[id(module)] = name
            handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(module.register_forward_hook(after, with_kwargs=True))
        output = model(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()

    # Attribute parameters: each tensor once, to the first row of the module that uses it.
    called = set(calls)
    seen: set[int] = set()

    def owned(module: nn.Module) -> int:
        n = 0
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        for child in module.children():
            if id(child) not in called:
                n += owned(child)
        return n

    for r, module in zip(rows, row_module):
        r.params = owned(module)  # 0 on later calls: everything was attributed at the first
    return Trace(rows, output)
