"""The sandboxed worker: the only process in which a student's code runs.

Started by ``sandbox.py`` (inside bubblewrap) as ``python -I worker.py LIMITS_JSON``. It first lowers its
resource limits and, when started as root, becomes an unprivileged user; only then does it read requests.
It never sees a hidden check, a reference, a solution or a score: it runs the student's cells and calls
their functions with the plain data the trusted checker sends, and sends back plain data.

Pipes: requests arrive on fd 0; replies leave on the pipe whose fd the trusted side passes; fds 1 and 2 (whatever the student prints) go to the
trusted side, which keeps a capped amount. Requests:

- ``exec``: run the top-level statements ``start..stop`` of a cell's source; a ``stmt`` message before each
  statement tells the trusted side where a hang or crash happened.
- ``has``: is the name defined, and callable?
- ``call``: call a function with decoded arguments (callables among them call back to the trusted side,
  and so do the names in ``isolate`` while the call runs); optionally a vector-Jacobian product.
- ``forbid``: replace APIs an exercise forbids with functions that raise.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import resource
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402  (this folder, not the package: the worker must not import the course package)

REQUESTS = 0
REPLIES = 3  # replaced by the pipe the trusted side passed (limits["reply_fd"])


class ForbiddenAPIError(Exception):
    """An API the exercise does not allow was called."""


class CallbackError(Exception):
    """A function given by the grader (a reference helper or an argument) could not run on what it was given."""


def apply_limits(limits: dict) -> None:
    """Resource limits, then (as root) an unprivileged user: before any student code runs."""
    for name, value in limits.get("rlimits", {}).items():
        which = getattr(resource, name)
        resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large file write fails instead of killing
    uid = limits.get("uid")
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() == 0 or os.geteuid() == 0:
            raise SystemExit("could not drop root")


def send(header: dict, value=None, has_value: bool = False) -> None:
    buffers = []
    if has_value:
        tree, buffers = wire.encode(value)
        header = {**header, "value": tree}
    wire.write_all(REPLIES, wire.pack(header, buffers))


def receive() -> tuple[dict, list[bytes]]:
    return wire.read_message(REQUESTS)


def describe(exc: BaseException) -> str:
    """``Type: message``, safe against a student exception whose ``str`` raises."""
    try:
        text = str(exc)
    except BaseException:
        text = "(its message could not be shown)"
    name = type(exc).__name__ if isinstance(type(exc).__name__, str) else "Exception"
    return f"{name}: {text}"[:500]


class Worker:
    def __init__(self):
        self.namespace = {"__name__": "__main__", "__builtins__": builtins}
        self.forbidden: dict[str, str] = {}

    # -- callbacks to the trusted side ---------------------------------------------------------
    def callback(self, handle: int, args: tuple, kwargs: dict):
        try:
            tree, buffers = wire.encode((list(args), kwargs))
        except wire.WireError as exc:
            raise CallbackError(f"arguments that cannot be sent: {exc}") from None
        wire.write_all(REPLIES, wire.pack({"kind": "callback", "id": handle, "args": tree}, buffers))
        header, buffers = receive()
        if header.get("kind") != "callback_result":
            raise SystemExit("protocol error")
        if not header.get("ok"):
            raise CallbackError(str(header.get("error", "the call failed")))
        return wire.decode(header["value"], buffers)

    def make_callback(self, handle: int):
        return wire.Callback(handle, self.callback)

    # -- requests -----------------------------------------------------------------------------
    def do_exec(self, req: dict) -> None:
        source, label = req["source"], req.get("label", "<cell>")
        try:
            tree = ast.parse(source, filename=label)
        except SyntaxError as exc:
            send({"kind": "done", "ok": False, "error": f"SyntaxError: {exc.msg} (line {exc.lineno})"})
            return
        stop = req.get("stop")
        statements = tree.body[req.get("start", 0): stop]
        for index, statement in enumerate(statements, start=req.get("start", 0)):
            send({"kind": "stmt", "index": index})
            code = compile(ast.Module([statement], type_ignores=[]), label, "exec")
            try:
                exec(code, self.namespace)
            except BaseException as exc:  # SystemExit and KeyboardInterrupt included: student code
                self.flush()
                send({"kind": "done", "ok": False, "error": describe(exc), "index": index})
                return
        self.flush()
        send({"kind": "done", "ok": True, "count": len(tree.body)})

    def do_has(self, req: dict) -> None:
        value = self.namespace.get(req["name"])
        send({"kind": "has", "defined": req["name"] in self.namespace, "callable": callable(value),
              "type": wire._type_name(value)})

    def do_forbid(self, req: dict) -> None:
        self.forbidden.update(req["apis"])
        self.install_forbidden()
        send({"kind": "done", "ok": True})

    def install_forbidden(self) -> None:
        """Make the forbidden APIs fail when called: a function (``torch.softmax``; ``torch.Tensor.x`` for
        a method) is swapped for one that raises; a top-level module not imported yet cannot be imported.
        Classes and submodules are left alone (torch uses them itself); the trusted side's scan of the
        answer's source catches those."""
        for dotted, reason in self.forbidden.items():
            module_name, _, attr = dotted.rpartition(".")
            if not module_name:
                if dotted not in sys.modules:
                    sys.modules[dotted] = None  # `import einops` now raises ImportError
                continue
            owner = sys.modules.get(module_name)
            if owner is None and module_name == "torch.Tensor" and "torch" in sys.modules:
                owner = sys.modules["torch"].Tensor
            value = getattr(owner, attr, None) if owner is not None else None
            if value is not None and type(value).__name__ in _FUNCTION_TYPES:
                setattr(owner, attr, _forbidden_stub(dotted, reason))

    def do_call(self, req: dict, buffers: list[bytes]) -> None:
        fn = self.namespace.get(req["name"])
        args, kwargs, cotangents = wire.decode(req["payload"], buffers, self.make_callback)
        saved = {}
        for name, handle in req.get("isolate", {}).items():
            saved[name] = self.namespace.get(name, _MISSING)
            self.namespace[name] = self.make_callback(handle)
        wrt = req.get("wrt")
        snapshot = _snapshot((args, kwargs))
        self.install_forbidden()  # again: student code may have put an API back
        try:
            if wrt is not None:
                value = self.call_with_vjp(fn, args, kwargs, wrt, cotangents)
            else:
                value = fn(*args, **kwargs)
        except NotImplementedError:
            self.flush()
            send({"kind": "result", "ok": False, "not_implemented": True, "error": "NotImplementedError"})
            return
        except BaseException as exc:
            self.flush()
            send({"kind": "result", "ok": False, "error": describe(exc)})
            return
        finally:
            for name, old in saved.items():
                if old is _MISSING:
                    self.namespace.pop(name, None)
                else:
                    self.namespace[name] = old
        self.flush()
        mutated = _mutated(snapshot, (args, kwargs))
        try:
            send({"kind": "result", "ok": True, "mutated": mutated}, value, has_value=True)
        except wire.WireError as exc:
            send({"kind": "result", "ok": False, "error": f"unsendable: {exc}"})

    def call_with_vjp(self, fn, args, kwargs, wrt: list[int], cotangents: list):
        """The output of ``fn`` and the vector-Jacobian products of ``cotangents`` (one per output tensor,
        or None) with respect to the arguments at the indices ``wrt``."""
        import torch

        args = list(args)
        for i in wrt:
            args[i] = args[i].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = fn(*args, **kwargs)
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            pairs = [(o, c) for o, c in zip(outs, cotangents) if c is not None]
            if not all(isinstance(o, torch.Tensor) and o.requires_grad for o, _ in pairs):
                raise RuntimeError("the output does not depend differentiably on the inputs "
                                   "(it was detached, or computed without autograd)")
            grads = torch.autograd.grad([o for o, _ in pairs], [args[i] for i in wrt],
                                        [c.to(o.dtype) for o, c in pairs], allow_unused=True)
        return {"output": out, "grads": [None if g is None else g.detach() for g in grads]}

    @staticmethod
    def flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass

    def serve(self) -> None:
        while True:
            try:
                req, buffers = receive()
            except wire.Closed:
                return
            kind = req.get("kind")
            if kind == "exec":
                self.do_exec(req)
            elif kind == "has":
                self.do_has(req)
            elif kind == "call":
                self.do_call(req, buffers)
            elif kind == "forbid":
                self.do_forbid(req)
            elif kind == "shutdown":
                return


_MISSING = object()
_FUNCTION_TYPES = {"function", "builtin_function_or_method", "method_descriptor", "wrapper_descriptor"}


def _forbidden_stub(dotted: str, reason: str):
    def forbidden(*args, **kwargs):
        raise ForbiddenAPIError(f"{dotted} is not allowed in this exercise ({reason})")

    return forbidden


def _tensors(value, out):
    import torch

    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _tensors(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _tensors(v, out)
    return out


def _snapshot(value):
    return [(t, t.detach().clone()) for t in _tensors(value, [])]


def _mutated(snapshot, value) -> list[str]:
    """Which argument tensors changed in place (compared byte for byte, so NaNs compare equal)."""
    import torch

    changed = []
    for i, (t, before) in enumerate(snapshot):
        after = t.detach()
        if after.shape != before.shape or after.dtype != before.dtype or not torch.equal(
            after.contiguous().reshape(-1).view(torch.uint8), before.contiguous().reshape(-1).view(torch.uint8)
        ):
            changed.append(i)
    return changed


def main() -> None:
    global REPLIES
    limits = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    REPLIES = int(limits.get("reply_fd", REPLIES))
    apply_limits(limits)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import numpy  # noqa: F401  (imported once here, not inside a timed call)
    import torch

    torch.set_num_threads(1)
    send({"kind": "ready", "uid": os.getuid()})
    Worker().serve()


if __name__ == "__main__":
    main()
