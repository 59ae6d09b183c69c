"""The trusted checker: hidden checks run here, against a proxy of the student's function.

A hidden-check file ``tests/hidden/psNN/test_<function>.py`` holds checks ``test_*(fn)``, each marked
``@check(points=...)``. ``fn`` is a ``FunctionProxy``: calling it sends plain data (tensors, arrays, numbers,
strings, tuples, lists, dicts; callables become callbacks) to the student's function in the sandboxed
worker and returns the plain data it sent back. ``fn.vjp(...)`` also returns vector-Jacobian products
computed there. A failing ``assert``'s message is the student's feedback. ``ISOLATE = {name: reference}``
makes the student's helper ``name`` call the reference here while the checks run, so one bug costs its
points once. ``tests/hidden/psNN/rules.py`` may hold ``FORBIDDEN = {"torch.softmax": "why", ...}``.

Nothing the worker sends can change a score: it can only make a check's assertions fail.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import wire
from .errors import CourseError
from .sandbox import ProtocolError, SandboxConfig, WorkerDied, WorkerProcess, WorkerTimeout

DEFAULT_CHECK_TIMEOUT = 10.0  # seconds per check (all of its calls into student code)
DEFAULT_LOAD_TIMEOUT = 30.0  # seconds per top-level statement of a cell while loading
MAX_MESSAGE = 300  # characters of a student exception message shown in feedback


def check(points: float = 1.0) -> Callable[[Callable], Callable]:
    """Mark a hidden check and give it its points: ``@check(points=1)`` above ``def test_x(fn): ...``."""
    if points <= 0:
        raise ValueError(f"a check must be worth a positive number of points; got {points}")

    def mark(test: Callable) -> Callable:
        test.points = float(points)
        return test

    return mark


class StudentCodeError(Exception):
    """The student's function raised, or returned something that cannot be graded; the message says which."""


class WorkerCrash(StudentCodeError):
    """The student's code ended or broke the worker process."""


class CheckTimeout(Exception):
    """A check ran past its time limit; the worker was killed."""


def shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------------------------------------
# Hidden-check files
# ------------------------------------------------------------------------------------------------


def hidden_check_file(root: Path, assignment: str, function_name: str) -> Path:
    """``<root>/psNN/test_<function>.py`` for assignment ``psNN_topic``."""
    if not function_name.isidentifier():
        raise ValueError(f"not a function name: {function_name!r}")
    return Path(root) / assignment.split("_", 1)[0] / f"test_{function_name}.py"


def _load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"_mt_hidden_{path.parent.name}_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise CourseError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_checks(path: Path) -> tuple[list[Callable], dict[str, Callable]]:
    """The ``test_*`` checks of a hidden-check file, in file order, and its ``ISOLATE`` references."""
    if not Path(path).is_file():
        raise CourseError(f"missing hidden-check file {path}")
    module = _load_module(Path(path))
    tests = [obj for name, obj in vars(module).items() if name.startswith("test_") and callable(obj)]
    unmarked = [t.__name__ for t in tests if not hasattr(t, "points")]
    if unmarked or not tests:
        raise CourseError(f"{Path(path).name}: every check needs @check(points=...), and there must be one: "
                          f"{unmarked or 'no checks'}")
    return tests, dict(getattr(module, "ISOLATE", {}))


def load_rules(root: Path, assignment: str) -> dict[str, str]:
    """``FORBIDDEN`` of ``<root>/psNN/rules.py``: dotted API name -> why it is not allowed."""
    path = Path(root) / assignment.split("_", 1)[0] / "rules.py"
    return dict(getattr(_load_module(path), "FORBIDDEN", {})) if path.is_file() else {}


def check_name(test: Callable) -> str:
    """A check's readable name: the first line of its docstring, else its name without ``test_``."""
    doc = (test.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else test.__name__.removeprefix("test_").replace("_", " ")


def fingerprint(paths: Iterable[Path]) -> str:
    """sha256 over the names and contents of every file under ``paths`` (integrity before and after)."""
    digest = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if root.is_dir() else [root]
        for p in files:
            digest.update(str(p).encode() + b"\0" + p.read_bytes() + b"\0")
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------
# Rules: forbidden APIs found in the answer's source
# ------------------------------------------------------------------------------------------------


def _aliases(sources: Iterable[str]) -> dict[str, str]:
    """Local name -> dotted module or attribute it stands for, from every import in ``sources``."""
    names = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def forbidden_uses(source: str, context: Iterable[str], forbidden: dict[str, str]) -> list[str]:
    """The forbidden APIs that ``source`` uses: by dotted name through any import alias, as a tensor
    method (``x.softmax(...)`` for ``torch.Tensor.softmax`` or ``torch.softmax``), or by a string given
    to ``getattr``/``__import__``.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    aliases = _aliases([*context, source])
    names = set(forbidden)
    methods = {name.rsplit(".", 1)[1] for name in names if name.startswith("torch.")}
    found = set()

    def resolve(parts: list[str]) -> str:
        head = aliases.get(parts[0], parts[0])
        return ".".join([head, *parts[1:]])

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts = _dotted(node)
            full = resolve(parts) if parts else None
            if full and any(full == n or full.startswith(n + ".") for n in names):
                found.add(next(n for n in names if full == n or full.startswith(n + ".")))
            elif node.attr in methods and not (full and full.split(".")[0] in ("math", "numpy", "np")):
                found.add(next(n for n in sorted(names) if n.endswith("." + node.attr)))
        elif isinstance(node, ast.Name) and node.id in aliases:
            full = aliases[node.id]
            if full in names:
                found.add(full)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in methods:
            found.add(next(n for n in sorted(names) if n.endswith("." + node.value)))
    return sorted(found)


# ------------------------------------------------------------------------------------------------
# One student's worker: cells loaded once, reloaded after a crash
# ------------------------------------------------------------------------------------------------


@dataclass
class Cell:
    """A code cell the worker runs: setup (``grade_id`` None) or a student's answer."""

    source: str
    grade_id: str | None = None

    @property
    def label(self) -> str:
        return f"<answer cell {self.grade_id}>" if self.grade_id else "<set-up cell>"


def _statement_lines(source: str) -> list[int]:
    try:
        return [node.lineno for node in ast.parse(source).body]
    except SyntaxError:
        return []


class Session:
    """The student's cells loaded in a sandboxed worker. A statement that hangs or kills the worker
    while loading is noted and skipped (with the rest of its cell) when the worker is started again.
    """

    def __init__(self, cells: list[Cell], config: SandboxConfig, forbidden: dict[str, str],
                 load_timeout: float = DEFAULT_LOAD_TIMEOUT):
        self.cells, self.config, self.forbidden, self.load_timeout = cells, config, forbidden, load_timeout
        self.stops: dict[int, int] = {}  # cell index -> statement index it must stop before
        self.notes: dict[str | None, list[str]] = {}  # grade_id -> notes about loading it
        self.printed: dict[str | None, str] = {}  # grade_id -> what loading it printed
        self.worker: WorkerProcess | None = None
        self.starts = 0

    def note(self, grade_id: str | None, text: str) -> None:
        notes = self.notes.setdefault(grade_id, [])
        if text not in notes:
            notes.append(text)

    def ensure(self) -> WorkerProcess:
        if self.worker is None or not self.worker.alive:
            self.start()
        return self.worker

    def start(self) -> None:
        for _ in range(len(self.cells) + 3):  # each restart skips at least one statement
            self.starts += 1
            self.worker = WorkerProcess(self.config)
            if self._load_all():
                return
        raise CourseError("the worker could not load the cells")

    def _load_all(self) -> bool:
        """Run every cell; False if the worker had to be killed (a stop point was added)."""
        first_load = self.starts == 1
        installed = not self.forbidden
        for index, cell in enumerate(self.cells):
            if cell.grade_id and not installed:
                self._request({"kind": "forbid", "apis": self.forbidden}, time.monotonic() + 30)
                installed = True
            stop = self.stops.get(index)
            if stop == 0:
                continue
            lines = _statement_lines(cell.source)
            current = 0
            self.worker.send({"kind": "exec", "source": cell.source, "label": cell.label, "stop": stop})
            deadline = time.monotonic() + self.load_timeout
            try:
                while True:
                    header, _ = self.worker.receive(deadline)
                    if header["kind"] == "stmt":
                        current = int(header.get("index", 0))
                        deadline = time.monotonic() + self.load_timeout
                    elif header["kind"] == "done":
                        break
                    else:
                        raise ProtocolError("unexpected reply while loading")
            except (WorkerTimeout, WorkerDied, ProtocolError) as exc:
                line = lines[current] if current < len(lines) else "?"
                if isinstance(exc, WorkerTimeout):
                    what = f"ran past the {fmt(self.load_timeout)} s limit"
                elif isinstance(exc, WorkerDied):
                    what = f"ended the grading process ({exc})"
                else:
                    what = "broke the grading process's messages"
                self.note(cell.grade_id, f"the statement at line {line} of your cell {what} while loading; "
                                         "it and the rest of the cell were skipped")
                self.printed[cell.grade_id] = self.worker.output.take()
                self.stops[index] = current
                self.worker.kill()
                return False
            printed = self.worker.output.take()
            if first_load:
                self.printed[cell.grade_id] = printed
            if not header.get("ok"):
                error = shorten(str(header.get("error", "")), MAX_MESSAGE)
                index_ = header.get("index")
                line = lines[index_] if isinstance(index_, int) and index_ < len(lines) else "?"
                self.note(cell.grade_id, f"your cell raised {error} at line {line} while loading; "
                                         "what came after it in the cell did not run")
        return True

    def _request(self, header: dict, deadline: float) -> dict:
        self.worker.send(header, deadline=deadline)
        reply, _ = self.worker.receive(deadline)
        return reply

    def has(self, name: str) -> dict:
        try:
            return self._request({"kind": "has", "name": name}, time.monotonic() + 30)
        except (WorkerTimeout, WorkerDied, ProtocolError):
            return {"defined": False, "callable": False, "type": "?"}

    def close(self) -> None:
        if self.worker is not None:
            self.worker.kill()


# ------------------------------------------------------------------------------------------------
# The proxy a check calls
# ------------------------------------------------------------------------------------------------


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"tensor{tuple(shape)}"
    if callable(value):
        return "<function>"
    return shorten(repr(value), 40)


def describe_call(name: str, args: tuple, kwargs: dict) -> str:
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


class FunctionProxy:
    """The student's function as a check sees it: plain data in, plain data out, within a deadline."""

    _handles = itertools.count()  # callback handles are never reused: one kept from an old call is dead

    def __init__(self, session: Session, name: str, references: dict[str, Callable], deadline: float,
                 allow_mutation: bool = False):
        self.session, self.__name__, self.references = session, name, references
        self.deadline, self.allow_mutation = deadline, allow_mutation
        self.printed: list[str] = []

    def __call__(self, *args, **kwargs):
        return self._call(args, kwargs)

    def vjp(self, args: tuple, cotangents, wrt: tuple[int, ...] = (0,), kwargs: dict | None = None):
        """``(output, grads)``: the function's output on ``args`` and the vector-Jacobian products of
        ``cotangents`` (a tensor per output tensor; None to skip one) with respect to ``args[i]`` for
        ``i`` in ``wrt``, computed by autograd in the worker. A grad is None where the output does not
        depend on that argument."""
        cot = list(cotangents) if isinstance(cotangents, (list, tuple)) else [cotangents]
        value = self._call(tuple(args), dict(kwargs or {}), wrt=list(wrt), cotangents=cot)
        if not (isinstance(value, dict) and set(value) == {"output", "grads"}):
            raise StudentCodeError("the gradient could not be computed")
        return value["output"], value["grads"]

    def _call(self, args: tuple, kwargs: dict, wrt=None, cotangents=None):
        worker = self.session.ensure()
        handles: dict[int, Callable] = {}

        def register(fn: Callable) -> int:
            handle = next(self._handles)
            handles[handle] = fn
            return handle

        isolate = {name: register(ref) for name, ref in self.references.items()}
        call = describe_call(self.__name__, args, kwargs)
        try:
            tree, buffers = wire.encode((list(args), kwargs, cotangents), register)
        except wire.WireError as exc:
            raise CourseError(f"a check passes a value that cannot be sent: {exc}") from None
        try:
            worker.send({"kind": "call", "name": self.__name__, "payload": tree, "isolate": isolate,
                         "wrt": wrt}, buffers, self.deadline)
            while True:
                header, buffers = worker.receive(self.deadline)
                if header["kind"] == "callback":
                    self._answer_callback(worker, handles, header, buffers)
                elif header["kind"] == "result":
                    break
                else:
                    raise ProtocolError("unexpected reply")
        except WorkerTimeout:
            raise CheckTimeout from None
        except WorkerDied as exc:
            raise WorkerCrash(f"{call} ended the grading process: {exc}") from None
        except ProtocolError:
            raise WorkerCrash(f"{call} broke the grading process's messages") from None
        finally:
            if worker.alive or worker.output.size:
                self.printed.append(worker.output.take())
        if not header.get("ok"):
            if header.get("not_implemented"):
                raise StudentCodeError("not implemented yet: replace `raise NotImplementedError()` with your code")
            error = shorten(str(header.get("error", "")), MAX_MESSAGE)
            if error.startswith("unsendable: "):
                raise StudentCodeError(f"{call} returned something that cannot be graded: "
                                       f"{error.removeprefix('unsendable: ')}")
            raise StudentCodeError(f"{call} raised {error}")
        try:
            value = wire.decode(header.get("value"), buffers)
        except wire.WireError as exc:
            raise StudentCodeError(f"{call} sent back a malformed result ({exc})") from None
        if header.get("mutated") and not self.allow_mutation:
            raise StudentCodeError(f"{call} changed its input in place: work on new tensors "
                                   "(e.g. x = x - m, not x -= m), the caller's tensors must not change")
        return value

    def _answer_callback(self, worker: WorkerProcess, handles: dict, header: dict, buffers: list[bytes]):
        fn = handles.get(header.get("id"))
        try:
            if fn is None:
                raise ValueError("unknown function")
            args, kwargs = wire.decode(header.get("args"), buffers)
            if type(args) is not list or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
                raise ValueError("malformed arguments")
            result = fn(*args, **kwargs)
            tree, out = wire.encode(result)
            reply = {"kind": "callback_result", "ok": True, "value": tree}
        except Exception as exc:  # the reference could not run on what the student passed it
            reply, out = {"kind": "callback_result", "ok": False,
                          "error": shorten(f"{type(exc).__name__}: {exc}", MAX_MESSAGE)}, []
        worker.send(reply, out, self.deadline)


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """The outcome of one hidden check."""

    name: str
    points: float
    earned: float
    message: str = ""  # empty when the check passed
    printed: str = ""  # what the student's code printed during the check (capped)

    @property
    def passed(self) -> bool:
        return self.earned == self.points

    def line(self) -> str:
        mark = "✓" if self.passed else "✗"
        text = f"  {mark} {fmt(self.earned)}/{fmt(self.points)}  {self.name}"
        if self.message:
            text += f" — {self.message}"
        if self.printed:
            text += f"  [your code printed: {shorten(self.printed, 80)!r}]"
        return text


@dataclass
class FunctionReport:
    """Every check of one graded function, and what happened while loading its cell."""

    name: str
    results: list[CheckResult]
    notes: list[str] = field(default_factory=list)

    @property
    def earned(self) -> float:
        return sum(r.earned for r in self.results)

    @property
    def points(self) -> float:
        return sum(r.points for r in self.results)

    def text(self) -> str:
        lines = [f"Hidden checks for {self.name}:"]
        lines += [f"  ! {note}" for note in self.notes]
        lines += [r.line() for r in self.results]
        lines.append(f"{self.name}: {fmt(self.earned)}/{fmt(self.points)} points")
        return "\n".join(lines)


def _not_run(tests: list[Callable], first: str, rest: str) -> list[CheckResult]:
    return [CheckResult(check_name(t), t.points, 0.0, first if i == 0 else rest) for i, t in enumerate(tests)]


def grade_function(session: Session, name: str, tests: list[Callable], references: dict[str, Callable],
                   limit: float, violations: list[str], forbidden: dict[str, str]) -> FunctionReport:
    """Run every check of ``name`` against the student's function in ``session``."""
    notes = list(session.notes.get(name, []))
    printed = session.printed.get(name, "").strip()
    if printed:
        notes.append(f"your cell printed while loading: {shorten(printed, 200)!r}")
    if violations:
        why = "; ".join(f"{api} ({forbidden[api]})" for api in violations)
        return FunctionReport(name, _not_run(tests, f"rule broken: your answer uses {why}, which this exercise "
                                                    "does not allow", "not run: rule broken"), notes)
    session.ensure()
    found = session.has(name)
    if not found.get("defined") or not found.get("callable"):
        what = (f"`{name}` is a {found.get('type')}, not a function" if found.get("defined") else
                f"`{name}` is not defined: keep the name `def {name}(...)` and make sure its cell runs without errors")
        return FunctionReport(name, _not_run(tests, what, f"not run: `{name}` is not defined"), notes)
    results: list[CheckResult] = []
    stopped = ""
    for test in tests:
        if stopped:
            results.append(CheckResult(check_name(test), test.points, 0.0, stopped))
            continue
        proxy = FunctionProxy(session, name, references, time.monotonic() + limit)
        message = ""
        try:
            test(proxy)
        except CheckTimeout:
            message = f"stopped after {fmt(limit)} s: does your code loop forever?"
            stopped = "not run: an earlier check ran out of time"
            session.worker.kill()
        except WorkerCrash as exc:
            message = str(exc)
            stopped = "not run: an earlier check ended the grading process"
        except StudentCodeError as exc:
            message = str(exc)
        except AssertionError as exc:
            message = shorten(str(exc), MAX_MESSAGE) or "the result is wrong"
        except CourseError:
            raise
        except Exception as exc:  # the checks pass on the solution (self-test), so the result is at fault
            detail = shorten(f"{type(exc).__name__}: {exc}", MAX_MESSAGE)
            message = f"your result could not be checked ({detail}); check its type and shape"
        printed = "\n".join(p.strip() for p in proxy.printed if p.strip())
        results.append(CheckResult(check_name(test), test.points, 0.0 if message else test.points, message,
                                   printed))
    return FunctionReport(name, results, notes)


@dataclass
class Program:
    """What the worker runs for one notebook, and the graded functions in notebook order."""

    cells: list[Cell]
    functions: list[str]


def grade_program(program: Program, assignment: str, hidden: Path, config: SandboxConfig,
                  check_timeout: float = DEFAULT_CHECK_TIMEOUT, load_timeout: float = DEFAULT_LOAD_TIMEOUT,
                  ) -> list[FunctionReport]:
    """Grade one notebook's program: a fresh sandboxed worker, every function's checks, the worker killed."""
    forbidden = load_rules(hidden, assignment)
    checks = {f: load_checks(hidden_check_file(hidden, assignment, f)) for f in program.functions}
    setup = [c.source for c in program.cells if c.grade_id is None]
    session = Session(program.cells, config, forbidden, load_timeout)
    reports = []
    try:
        session.ensure()
        for function in program.functions:
            tests, references = checks[function]
            answer = "\n\n".join(c.source for c in program.cells if c.grade_id == function)
            violations = forbidden_uses(answer, setup, forbidden) if forbidden else []
            reports.append(grade_function(session, function, tests, references, check_timeout, violations,
                                          forbidden))
    finally:
        session.close()
    return reports
