"""Plain data across the sandbox boundary: what may cross, how it is encoded, how messages are framed.

Both sides import this file: the trusted checker (inside the package) and the sandboxed worker (which
runs it as a plain module, without importing the package). It needs only the standard library, torch
and numpy.

A message is ``length (8 bytes) | header length (4 bytes) | JSON header | binary buffers``. Values in
the header are JSON trees: None, bools, ints, floats, strings and lists as themselves; everything else
as ``{"$": kind, ...}``: tuples, dicts, tensors and arrays (dtype, shape, index of their buffer),
complex numbers, bytes and callbacks (a handle the other side calls back through).

Decoding is strict and builds only builtins, plain ``torch.Tensor`` and plain ``numpy.ndarray``: a
tensor subclass, a student class or a pickled object can never come out of it, whatever the sender did.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time

import numpy as np
import torch

MAX_MESSAGE_BYTES = 256 * 2**20  # a result larger than this is refused, not read
MAX_DEPTH = 32
MAX_ITEMS = 200_000  # containers and their elements in one message

TENSOR_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64, torch.complex128,
              torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)
}
ARRAY_KINDS = set("biufc")  # bool, signed, unsigned, float, complex: never object arrays


class WireError(ValueError):
    """A value that may not cross, or a message that is not well formed."""


class Callback:
    """A handle to a function on the other side: calling it sends the arguments there."""

    def __init__(self, handle: int, call):
        self.handle, self._call = handle, call

    def __call__(self, *args, **kwargs):
        return self._call(self.handle, args, kwargs)


# ------------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------------


def _tensor_bytes(t: torch.Tensor) -> tuple[str, list[int], bytes]:
    # A subclass's __torch_function__ would answer every question below: turn it off first.
    with torch._C.DisableTorchFunctionSubclass():
        return _plain_tensor_bytes(torch.Tensor.as_subclass(t, torch.Tensor))


def _plain_tensor_bytes(t: torch.Tensor) -> tuple[str, list[int], bytes]:
    if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
        raise WireError(f"a {t.layout} tensor on {t.device.type} cannot be sent: return a dense tensor")
    t = t.detach().cpu()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    name = str(t.dtype).removeprefix("torch.")
    if name not in TENSOR_DTYPES:
        raise WireError(f"tensors of dtype {t.dtype} cannot be sent")
    flat = t.contiguous().reshape(-1)
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return name, list(t.shape), data


def encode(value, register_callable=None) -> tuple[dict, list[bytes]]:
    """(header tree, buffers) of ``value``. Callables become callbacks only if ``register_callable``
    (callable -> handle) is given; otherwise they may not cross.
    """
    buffers: list[bytes] = []
    count = 0

    def enc(x, depth):
        nonlocal count
        count += 1
        if depth > MAX_DEPTH or count > MAX_ITEMS:
            raise WireError("the value is nested too deeply or has too many elements")
        if x is None or type(x) in (bool, str):
            return x
        if type(x) is int:
            return x if -(2**63) <= x < 2**63 else {"$": "bigint", "v": str(x)}
        if type(x) is float:
            return x if math.isfinite(x) else {"$": "float", "v": repr(x)}
        if isinstance(x, torch.Tensor):
            dtype, shape, data = _tensor_bytes(x)
            buffers.append(data)
            return {"$": "tensor", "dtype": dtype, "shape": shape, "buf": len(buffers) - 1}
        if isinstance(x, np.ndarray):
            a = np.ascontiguousarray(np.asarray(x))
            if a.dtype.kind not in ARRAY_KINDS:
                raise WireError(f"numpy arrays of dtype {a.dtype} cannot be sent")
            buffers.append(a.tobytes())
            return {"$": "ndarray", "dtype": a.dtype.str, "shape": list(a.shape), "buf": len(buffers) - 1}
        if isinstance(x, np.generic) and x.dtype.kind in ARRAY_KINDS:
            return enc(x.item(), depth + 1)
        if isinstance(x, bool):  # a subclass of bool cannot exist; kept for clarity
            return bool(x)
        if isinstance(x, int):  # int subclasses (IntEnum, student classes) become plain ints
            return enc(int.__index__(x), depth)
        if isinstance(x, float):
            return enc(float.__float__(x) if type(x).__float__ is float.__float__ else float(x), depth)
        if isinstance(x, complex):
            return {"$": "complex", "re": enc(float(x.real), depth + 1), "im": enc(float(x.imag), depth + 1)}
        if isinstance(x, str):
            return str.__str__(x)
        if isinstance(x, (bytes, bytearray)):
            buffers.append(bytes(x))
            return {"$": "bytes", "buf": len(buffers) - 1}
        if isinstance(x, tuple):
            return {"$": "tuple", "items": [enc(v, depth + 1) for v in tuple.__iter__(x)]}
        if isinstance(x, list):
            return [enc(v, depth + 1) for v in list.__iter__(x)]
        if isinstance(x, dict):
            items = []
            for k, v in dict.items(x):
                if type(k) not in (str, int):
                    raise WireError(f"dict keys must be str or int; got {type(k).__name__}")
                items.append([k, enc(v, depth + 1)])
            return {"$": "dict", "items": items}
        if callable(x) and register_callable is not None:
            return {"$": "callback", "id": register_callable(x)}
        raise WireError(f"a {_type_name(x)} cannot be graded: return tensors, numbers, strings, "
                        "tuples, lists or dicts of them")

    return enc(value, 0), buffers


def _type_name(x) -> str:
    try:
        return str(type(x).__name__)[:40]
    except Exception:
        return "object"


# ------------------------------------------------------------------------------------------------
# Decoding (strict: plain values only)
# ------------------------------------------------------------------------------------------------


def decode(tree, buffers: list[bytes], make_callback=None):
    """The value encoded by ``encode``: builtins, plain tensors and arrays, and (only if
    ``make_callback`` is given) callbacks. Raises ``WireError`` on anything else.
    """
    count = 0

    def buffer(i) -> bytes:
        if type(i) is not int or not 0 <= i < len(buffers):
            raise WireError("bad buffer index")
        return buffers[i]

    def shape_of(node) -> tuple[int, ...]:
        shape = node.get("shape")
        if type(shape) is not list or len(shape) > 16 or any(type(s) is not int or s < 0 for s in shape):
            raise WireError("bad shape")
        return tuple(shape)

    def dec(x, depth):
        nonlocal count
        count += 1
        if depth > MAX_DEPTH or count > MAX_ITEMS:
            raise WireError("the value is nested too deeply or has too many elements")
        if x is None or type(x) in (bool, int, float, str):
            return x
        if type(x) is list:
            return [dec(v, depth + 1) for v in x]
        if type(x) is not dict or type(x.get("$")) is not str:
            raise WireError("malformed value")
        kind = x["$"]
        if kind == "tuple" and type(x.get("items")) is list:
            return tuple(dec(v, depth + 1) for v in x["items"])
        if kind == "dict" and type(x.get("items")) is list:
            out = {}
            for pair in x["items"]:
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) not in (str, int):
                    raise WireError("malformed dict")
                out[pair[0]] = dec(pair[1], depth + 1)
            return out
        if kind == "tensor":
            dtype = TENSOR_DTYPES.get(x.get("dtype"))
            if dtype is None:
                raise WireError("bad tensor dtype")
            shape, data = shape_of(x), buffer(x.get("buf"))
            numel = math.prod(shape)
            if numel * torch.empty((), dtype=dtype).element_size() != len(data):
                raise WireError("tensor size does not match its data")
            if numel == 0:
                return torch.empty(shape, dtype=dtype)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
        if kind == "ndarray":
            try:
                dtype = np.dtype(x.get("dtype"))
            except TypeError:
                raise WireError("bad array dtype") from None
            if dtype.kind not in ARRAY_KINDS:
                raise WireError("bad array dtype")
            shape, data = shape_of(x), buffer(x.get("buf"))
            if math.prod(shape) * dtype.itemsize != len(data):
                raise WireError("array size does not match its data")
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        if kind == "float" and x.get("v") in ("nan", "inf", "-inf"):
            return float(x["v"])
        if kind == "bigint" and type(x.get("v")) is str and len(x["v"]) < 5000:
            return int(x["v"])
        if kind == "complex":
            return complex(dec(x.get("re"), depth + 1), dec(x.get("im"), depth + 1))
        if kind == "bytes":
            return bytes(buffer(x.get("buf")))
        if kind == "callback" and make_callback is not None and type(x.get("id")) is int:
            return make_callback(x["id"])
        raise WireError(f"unknown kind of value {kind[:20]!r}")

    return dec(tree, 0)


# ------------------------------------------------------------------------------------------------
# Framing
# ------------------------------------------------------------------------------------------------


def pack(header: dict, buffers: list[bytes] = ()) -> bytes:
    """One framed message."""
    head = json.dumps({**header, "buffers": [len(b) for b in buffers]}, allow_nan=False).encode()
    body = struct.pack(">I", len(head)) + head + b"".join(buffers)
    return struct.pack(">Q", len(body)) + body


def unpack(body: bytes) -> tuple[dict, list[bytes]]:
    """(header, buffers) of a message body (the bytes after the length)."""
    if len(body) < 4:
        raise WireError("truncated message")
    (n,) = struct.unpack(">I", body[:4])
    try:
        header = json.loads(body[4 : 4 + n])
    except ValueError:
        raise WireError("the message header is not JSON") from None
    sizes = header.get("buffers") if type(header) is dict else None
    if type(sizes) is not list or any(type(s) is not int or s < 0 for s in sizes):
        raise WireError("malformed message header")
    buffers, offset = [], 4 + n
    for size in sizes:
        buffers.append(body[offset : offset + size])
        offset += size
    if offset != len(body):
        raise WireError("the message length does not match its buffers")
    return header, buffers


class Timeout(Exception):
    """A read or write did not finish before its deadline."""


class Closed(Exception):
    """The other end closed the pipe (for a worker: it exited or was killed)."""


def write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write every byte to a pipe, waiting at most until ``deadline`` (time.monotonic())."""
    view = memoryview(data)
    while view:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout
            _, ready, _ = select.select([], [fd], [], remaining)
            if not ready:
                continue
        try:
            n = os.write(fd, view[: 1 << 20])
        except BrokenPipeError:
            raise Closed from None
        view = view[n:]


def read_message(fd: int, deadline: float | None = None, on_idle=None, watch: int | None = None
                 ) -> tuple[dict, list[bytes]]:
    """Read one framed message from a pipe. ``on_idle`` is called whenever ``watch`` (the worker's output
    pipe) is readable, and between reads: the trusted side drains the output there, so a worker that
    prints a lot is never blocked on a full pipe.
    """
    head = _read_exact(fd, 8, deadline, on_idle, watch)
    (size,) = struct.unpack(">Q", head)
    if size > MAX_MESSAGE_BYTES:
        raise WireError(f"a message of {size / 2**20:.0f} MiB is larger than the limit of "
                        f"{MAX_MESSAGE_BYTES // 2**20} MiB")
    return unpack(_read_exact(fd, size, deadline, on_idle, watch))


def _read_exact(fd: int, n: int, deadline: float | None, on_idle, watch: int | None = None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None or on_idle is not None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Timeout
            wait = 0.05 if remaining is None else min(0.05, remaining)
            ready, _, _ = select.select([fd] if watch is None else [fd, watch], [], [], wait)
            if on_idle is not None:
                on_idle()
            if fd not in ready:
                continue
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise Closed
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
