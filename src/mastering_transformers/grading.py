"""Autograding of the course's nbgrader exercises: the hidden-check runner and the ``grade`` command.

Two halves, used in two places:

* ``run_checks(assignment, function_name, namespace)`` runs inside the student's notebook. Each locked
  test cell of an exercise calls it at grading time. It loads ``tests/hidden/psNN/test_<function>.py``,
  runs every check in it against the student's function, prints one line per check (✓/✗, points, and
  what to fix) and returns the points earned, which nbgrader records as that cell's partial credit.
  Nothing reaches stderr (nbgrader scores a test cell with any stderr output as 0), every exception
  from student code is caught, and each check has a wall-clock limit.
* ``python -m mastering_transformers.grading grade --submissions DIR --out OUTDIR`` runs the real
  nbgrader pipeline on a folder of submissions in a fresh temporary course directory
  (``generate_assignment``, collect, ``autograde`` once per student, ``generate_feedback``, ``export``)
  and writes ``OUTDIR/grades.csv`` and ``OUTDIR/feedback/<student>/``.

A hidden-check file holds pytest-style functions ``test_*(fn)``, each decorated with ``@check(points=...)``
and taking the student's function; a failing ``assert``'s message is the student's feedback. An
optional module-level ``ISOLATE = {name: reference}`` swaps the student's helpers (looked up in the
function's globals) for references while the checks run, so one bug costs its points only once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import importlib.util
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HIDDEN_TESTS_ENV = "MT_HIDDEN_TESTS"
CHECK_TIMEOUT_ENV = "MT_CHECK_TIMEOUT"
DEFAULT_CHECK_TIMEOUT = 10.0  # seconds per check; nbgrader's per-cell timeout is the backstop
_MAX_MESSAGE = 300  # characters of an exception message shown to the student

# ------------------------------------------------------------------------------------------------
# The runner (imported inside the student's kernel: standard library only at import time)
# ------------------------------------------------------------------------------------------------


def check(points: float = 1.0) -> Callable[[Callable], Callable]:
    """Mark a hidden check and give it its points: ``@check(points=1)`` above ``def test_x(fn): ...``."""
    if points <= 0:
        raise ValueError(f"a check must be worth a positive number of points; got {points}")

    def mark(test: Callable) -> Callable:
        test.points = float(points)
        return test

    return mark


class StudentCodeError(Exception):
    """The student's function raised; the message says which call and what it raised."""


class CheckTimeout(BaseException):
    """A check ran past its wall-clock limit (a BaseException, so ``except Exception`` cannot hide it)."""


@dataclass
class CheckResult:
    """The outcome of one hidden check."""

    name: str
    points: float
    earned: float
    message: str = ""  # empty when the check passed
    printed: str = ""  # what the student's code printed (stdout, stderr, warnings) during the check
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.earned == self.points

    def line(self) -> str:
        """The one line of feedback for this check."""
        mark = "✓" if self.passed else "✗"
        text = f"  {mark} {_fmt(self.earned)}/{_fmt(self.points)}  {self.name}"
        if self.message:
            text += f" — {self.message}"
        if self.printed:
            text += f"  [your code printed: {_shorten(self.printed, 80)!r}]"
        return text


def _fmt(x: float) -> str:
    return f"{x:g}"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def find_hidden_tests(start: Path | None = None) -> Path:
    """The ``tests/hidden`` folder: ``$MT_HIDDEN_TESTS``, else the first one above ``start`` (default:
    the working directory), else the one next to this package's source tree (``src/../tests/hidden``).
    """
    if os.environ.get(HIDDEN_TESTS_ENV):
        return Path(os.environ[HIDDEN_TESTS_ENV])
    start = Path.cwd() if start is None else Path(start)
    for folder in (start, *start.resolve().parents):
        if (folder / "tests" / "hidden").is_dir():
            return folder / "tests" / "hidden"
    beside_source = Path(__file__).resolve().parents[2] / "tests" / "hidden"
    if beside_source.is_dir():
        return beside_source
    raise FileNotFoundError(
        f"no tests/hidden folder above {start} or beside the package; set {HIDDEN_TESTS_ENV} to its path"
    )


def hidden_check_file(assignment: str, function_name: str, root: Path | None = None) -> Path:
    """``tests/hidden/psNN/test_<function>.py`` for assignment ``psNN_topic``."""
    if not function_name.isidentifier():
        raise ValueError(f"not a function name: {function_name!r}")
    folder = assignment.split("_", 1)[0]
    return (find_hidden_tests() if root is None else Path(root)) / folder / f"test_{function_name}.py"


def load_checks(path: Path) -> tuple[list[Callable], dict[str, Callable]]:
    """The ``test_*`` checks of a hidden-check file, in file order, and its ``ISOLATE`` references."""
    spec = importlib.util.spec_from_file_location(f"_mt_hidden_{path.parent.name}_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [obj for name, obj in vars(module).items() if name.startswith("test_") and callable(obj)]
    unmarked = [t.__name__ for t in tests if not hasattr(t, "points")]
    if unmarked:
        raise ValueError(f"{path.name}: give every check its points with @check(points=...): {unmarked}")
    return tests, dict(getattr(module, "ISOLATE", {}))


def check_name(test: Callable) -> str:
    """A check's readable name: the first line of its docstring, else its name without ``test_``."""
    doc = (test.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else test.__name__.removeprefix("test_").replace("_", " ")


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"tensor{tuple(shape)}"
    return _shorten(repr(value), 40)


def _describe_call(name: str, args: tuple, kwargs: dict) -> str:
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def guard(fn: Callable, name: str) -> Callable:
    """Wrap the student's function so that whatever it raises becomes a ``StudentCodeError`` that says
    which call failed. Timeouts and Ctrl-C (nbgrader's own cell timeout) pass through.
    """

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (CheckTimeout, KeyboardInterrupt):
            raise
        except NotImplementedError:
            raise StudentCodeError("not implemented yet: replace `raise NotImplementedError()` with your code") from None
        except BaseException as exc:  # SystemExit included: it is the student's code
            detail = _shorten(f"{type(exc).__name__}: {exc}", _MAX_MESSAGE)
            raise StudentCodeError(f"{_describe_call(name, args, kwargs)} raised {detail}") from None

    return call


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``CheckTimeout`` in the main thread after ``seconds`` of wall-clock time (SIGALRM).

    Does nothing off the main thread, where signals cannot be used, or when ``seconds`` is not positive.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not seconds or seconds <= 0 or not usable:
        yield
        return
    state = {"active": True}

    def on_alarm(signum, frame):
        if state["active"]:
            raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        state["active"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _fd_redirected(fd: int, sink: list[str]) -> Iterator[None]:
    """Point file descriptor ``fd`` at a temporary file (C-level writes too) and collect what lands there."""
    try:
        saved = os.dup(fd)
    except OSError:  # fd closed: nothing can be written to it anyway
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", errors="replace"))


@contextlib.contextmanager
def captured_output(sink: list[str]) -> Iterator[None]:
    """Collect everything printed inside the block into ``sink``: ``sys.stdout``, ``sys.stderr``,
    file descriptors 1 and 2, and warnings. Nothing reaches the real stderr.
    """
    buffer = io.StringIO()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_fd_redirected(2, sink))
        stack.enter_context(_fd_redirected(1, sink))
        stack.enter_context(contextlib.redirect_stdout(buffer))
        stack.enter_context(contextlib.redirect_stderr(buffer))
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        try:
            yield
        finally:
            sink.append(buffer.getvalue())
            sink.extend(f"{w.category.__name__}: {w.message}" for w in caught)


@contextlib.contextmanager
def isolated(fn: Callable, references: Mapping[str, Callable]) -> Iterator[None]:
    """While the block runs, the names in ``references`` that exist in ``fn``'s globals point at the
    references instead of the student's versions; they are put back afterwards.
    """
    namespace = getattr(fn, "__globals__", None)
    swapped = {n: namespace[n] for n in references if namespace is not None and n in namespace}
    try:
        for name in swapped:
            namespace[name] = references[name]
        yield
    finally:
        for name, original in swapped.items():
            namespace[name] = original


def run_one_check(test: Callable, fn: Callable, limit: float | None) -> CheckResult:
    """Run one check against ``fn``; any failure becomes a message, never an exception."""
    points = float(test.points)
    printed: list[str] = []
    message, timed_out = "", False
    try:
        with captured_output(printed), time_limit(limit):
            test(fn)
    except CheckTimeout:
        message, timed_out = f"stopped after {_fmt(limit)} s: does your code loop forever?", True
    except StudentCodeError as exc:
        message = str(exc)
    except AssertionError as exc:
        message = _shorten(str(exc), _MAX_MESSAGE) or "the result is wrong"
    except Exception as exc:
        detail = _shorten(f"{type(exc).__name__}: {exc}", _MAX_MESSAGE)
        message = f"your result could not be checked ({detail}); check its type and shape"
    earned = 0.0 if message else points
    printed_text = "\n".join(text.strip() for text in printed if text.strip())
    return CheckResult(check_name(test), points, earned, message, printed_text, timed_out)


def _check_timeout() -> float:
    try:
        return float(os.environ.get(CHECK_TIMEOUT_ENV, DEFAULT_CHECK_TIMEOUT))
    except ValueError:
        return DEFAULT_CHECK_TIMEOUT


def _resolve(function_name: str, fn_or_namespace: object) -> tuple[Callable | None, str]:
    """The student's function, or None and why not."""
    fn = fn_or_namespace.get(function_name) if isinstance(fn_or_namespace, Mapping) else fn_or_namespace
    if fn is None:
        return None, (
            f"`{function_name}` is not defined: keep the name `def {function_name}(...)` "
            "and make sure its cell runs without errors"
        )
    if not callable(fn):
        return None, f"`{function_name}` is a {type(fn).__name__}, not a function"
    return fn, ""


def grade_function(
    assignment: str, function_name: str, fn_or_namespace: object, limit: float | None = None
) -> list[CheckResult]:
    """Run every hidden check of ``function_name`` against the student's function and return the results.

    ``fn_or_namespace`` is the function itself, or a namespace (``globals()``) to look it up in.
    """
    limit = _check_timeout() if limit is None else limit
    path = hidden_check_file(assignment, function_name)
    sink: list[str] = []
    with captured_output(sink):  # loading imports torch etc.: keep its chatter off stderr too
        tests, references = load_checks(path)
    fn, missing = _resolve(function_name, fn_or_namespace)
    if fn is None:
        short = f"not run: `{function_name}` is not defined"
        return [CheckResult(check_name(t), float(t.points), 0.0, missing if i == 0 else short)
                for i, t in enumerate(tests)]
    guarded = guard(fn, function_name)
    results, timed_out = [], False
    with isolated(fn, references):
        for test in tests:
            if timed_out:  # an endless loop would only cost the time limit again
                message = "not run: an earlier check ran out of time"
                results.append(CheckResult(check_name(test), float(test.points), 0.0, message))
                continue
            results.append(run_one_check(test, guarded, limit))
            timed_out = results[-1].timed_out
    return results


def run_checks(assignment: str, function_name: str, fn_or_namespace: object, limit: float | None = None) -> float:
    """Run the hidden checks of one function, print one line per check to stdout, return the points earned.

    Called from an exercise's locked test cell as ``run_checks("ps02_attention", "attention", globals())``;
    the cell's value is the partial credit nbgrader records. Never raises and never writes to stderr.
    """
    with contextlib.redirect_stderr(sys.stdout):
        try:
            results = grade_function(assignment, function_name, fn_or_namespace, limit)
        except Exception as exc:  # the hidden checks themselves are missing or broken: the course's fault
            print(f"✗ the hidden checks for {function_name} could not run ({type(exc).__name__}: {exc}); "
                  "tell your instructor")
            return 0.0
        print(f"Hidden checks for {function_name}:")
        for result in results:
            print(result.line())
        earned = sum(r.earned for r in results)
        total = sum(r.points for r in results)
        print(f"{function_name}: {_fmt(earned)}/{_fmt(total)} points")
        sys.stdout.flush()
    return earned


# ------------------------------------------------------------------------------------------------
# The grading pipeline (the instructor's side: real nbgrader commands in a temporary course)
# ------------------------------------------------------------------------------------------------

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Submission:
    """One student's submission as found in the submissions folder, and what happened to it."""

    student: str
    path: Path | None
    problem: str = ""  # why it could not be graded; empty when it was
    notes: list[str] = field(default_factory=list)
    notebook: object = None  # the validated notebook (nbformat v4)
    score: float = 0.0
    details: str = ""  # points per test cell, e.g. "attention 3/4"
    seconds: float = 0.0  # wall time of its nbgrader autograde
    log: str = ""  # nbgrader's autograde log


def find_course_root(start: Path | None = None) -> Path:
    """The course root: the first folder above ``start`` (default: cwd) with nbgrader_config.py and
    solutions/, else the repository this package was installed from.
    """
    start = (Path.cwd() if start is None else Path(start)).resolve()
    for folder in (start, *start.parents, Path(__file__).resolve().parents[2]):
        if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(f"no course root (nbgrader_config.py and solutions/) above {start}; pass --course")


def discover_submissions(folder: Path, assignment: str) -> list[Submission]:
    """Every submission in ``folder``: ``<student>/<assignment>.ipynb`` (or the only notebook in
    ``<student>/``) and ``<student>.ipynb``. Each student appears once, problems included; when both
    forms exist, the folder wins and the other is noted.
    """
    found: dict[str, Submission] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name)):
        if entry.name.startswith(".") or not (entry.is_dir() or entry.suffix == ".ipynb"):
            continue
        student = entry.name if entry.is_dir() else entry.stem
        path = _notebook_in(entry, assignment) if entry.is_dir() else entry
        problem = "" if path else f"missing notebook: no {assignment}.ipynb in {entry.name}/"
        if not STUDENT_ID.match(student):
            problem = f"invalid student id {student!r}: use letters, digits, '_', '.', '-'"
        earlier = found.get(student)
        if earlier is None or (earlier.path is None and path is not None):
            found[student] = Submission(student, path, problem)
            if earlier is not None:
                found[student].notes.append(f"ignored the empty folder {student}/")
        else:
            earlier.notes.append(f"ignored a second submission {entry.name}")
    return sorted(found.values(), key=lambda s: s.student)


def _notebook_in(folder: Path, assignment: str) -> Path | None:
    expected = folder / f"{assignment}.ipynb"
    if expected.is_file():
        return expected
    notebooks = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    return notebooks[0] if len(notebooks) == 1 else None


def read_valid_notebook(path: Path):
    """The notebook at ``path`` as nbformat v4, or ``ValueError`` saying why it is not a valid notebook."""
    import nbformat

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid notebook: not valid JSON ({_shorten(str(exc), 120)})") from None
    if not isinstance(data, dict) or "cells" not in data or "nbformat" not in data:
        raise ValueError("invalid notebook: valid JSON, but not a Jupyter notebook (no 'cells' or 'nbformat')")
    try:
        nb = nbformat.reads(text, as_version=4)  # upgrades old versions, repairs missing cell ids
        nbformat.validate(nb)
    except Exception as exc:
        reason = _schema_error(data) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"invalid notebook: {_shorten(reason, 160)}") from None
    return nb


def _schema_error(data: dict) -> str:
    """The first complaint of nbformat's JSON schema about a notebook's raw JSON; empty if none."""
    from nbformat.validator import get_validator

    try:
        validator = get_validator(version=data["nbformat"], version_minor=data.get("nbformat_minor"))
        if validator is None:
            return f"unsupported nbformat version {data['nbformat']!r}"
        errors = [error.message for error in validator.iter_errors(data)]
    except Exception:
        return ""
    return errors[0] if errors else ""


def tampering_notes(submitted, released) -> list[str]:
    """What the student changed in the locked cells. nbgrader restores an edited one, and puts a deleted
    one back after the nbgrader cell before it, which it cannot do if that cell was deleted too.
    """
    present = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in submitted.cells}
    notes, previous = [], None
    for original in released.cells:
        meta = original.metadata.get("nbgrader", {})
        if meta.get("locked"):
            cell = present.get(meta["grade_id"])
            if cell is None and previous is not None and previous not in present:
                notes.append(f"locked cell {meta['grade_id']} was deleted with the cell {previous} before it: "
                             "nbgrader cannot put it back, so it scores 0")
            elif cell is None:
                notes.append(f"locked cell {meta['grade_id']} was deleted: nbgrader put it back")
            elif (cell.source, cell.metadata["nbgrader"].get("points")) != (original.source, meta.get("points")):
                if not _is_source_version(cell, meta["grade_id"]):
                    notes.append(f"locked cell {meta['grade_id']} was edited: nbgrader restored it")
        if meta:
            previous = meta["grade_id"]
    return notes


def _is_source_version(cell, grade_id: str) -> bool:
    """A test cell that holds the instructor's full source (hidden tests included) was not edited."""
    return "### BEGIN HIDDEN TESTS" in cell.source and f'"{grade_id.removeprefix("test_")}"' in cell.source


def execution_notes(autograded) -> list[str]:
    """Errors and timeouts in the autograded notebook, one short note per failing cell."""
    notes = []
    for index, cell in enumerate(autograded.cells):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            where = f"answer cell {meta['grade_id']}"
        elif meta.get("grade"):
            where = f"test cell {meta['grade_id']}"
        else:
            where = f"cell {index + 1} (not graded)"
        if any(e.get("ename") == "CellTimeoutError" for e in errors):
            notes.append(f"{where} ran past the time limit and was interrupted")
        else:
            notes.append(f"{where} raised {errors[0].get('ename')}: {_shorten(errors[0].get('evalue', ''), 80)}")
    return notes


def _last_error(log: str) -> str:
    """The last ``SomeError: message`` line of a log (the exception that stopped nbgrader)."""
    errors = [line.strip() for line in log.splitlines() if re.match(r"\s*[\w.]*(Error|Exception|Entry)\b", line)]
    return _shorten(errors[-1], 160) if errors else ""


class Course:
    """A throwaway nbgrader course directory with one assignment, driven by nbgrader's command line."""

    def __init__(self, root: Path, assignment: str, env: dict[str, str], timeout: int | None):
        self.root, self.assignment, self.env, self.timeout = root, assignment, env, timeout

    @classmethod
    def create(cls, root: Path, source_course: Path, assignment: str, timeout: int | None = None,
               check_timeout: float | None = None) -> Course:
        """A new course in ``root`` holding the config and solutions/<assignment> of ``source_course``."""
        root.mkdir(parents=True)
        shutil.copy(source_course / "nbgrader_config.py", root / "nbgrader_config.py")
        shutil.copytree(source_course / "solutions" / assignment, root / "solutions" / assignment)
        bin_dir = str(Path(sys.executable).parent)  # nbgrader runs alembic from PATH
        env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "MPLBACKEND": "Agg",
               HIDDEN_TESTS_ENV: str((source_course / "tests" / "hidden").resolve())}
        if check_timeout is not None:
            env[CHECK_TIMEOUT_ENV] = str(check_timeout)
        return cls(root, assignment, env, timeout)

    def clone(self, root: Path) -> Course:
        """A copy of this course (gradebook included) in ``root``: a worker grades its share there."""
        shutil.copytree(self.root, root)
        return Course(root, self.assignment, self.env, self.timeout)

    def nbgrader(self, *args: str, timeout: float = 600) -> tuple[int, str]:
        """Run ``nbgrader ARGS`` in the course; its exit status and its log (stdout and stderr)."""
        proc = subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=self.root, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the kernel it started goes too
            log, _ = proc.communicate()
            return -9, f"{log}\n[killed after {timeout:g} s]"
        return proc.returncode, log

    def path(self, kind: str, student: str | None = None) -> Path:
        """``<kind>/[<student>/]<assignment>/<assignment>.ipynb`` in the course."""
        parts = [kind, *([student] if student else []), self.assignment, f"{self.assignment}.ipynb"]
        return self.root.joinpath(*parts)

    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(f"sqlite:///{self.root / 'gradebook.db'}")

    def generate_assignment(self):
        """``nbgrader generate_assignment``: fills the gradebook; returns the released notebook."""
        import nbformat

        rc, log = self.nbgrader("generate_assignment", self.assignment, "--force")
        if rc != 0 or not self.path("exercises").is_file():
            raise RuntimeError(f"nbgrader generate_assignment failed:\n{log[-3000:]}")
        return nbformat.read(self.path("exercises"), as_version=4)

    def collect(self, sub: Submission) -> None:
        """nbgrader's collect step, done by copying: the validated notebook goes to
        ``submitted/<student>/<assignment>/<assignment>.ipynb``.
        """
        import nbformat

        target = self.path("submitted", sub.student)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(sub.notebook, target)

    def autograde(self, sub: Submission) -> None:
        """``nbgrader autograde --student <id>``: one process per student, so one crash stays one student's."""
        import nbformat

        args = ["autograde", self.assignment, "--student", sub.student, "--force"]
        if self.timeout is not None:
            args.append(f"--Execute.timeout={self.timeout}")
        limit = 120 + 20 * (self.timeout or 30)  # a backstop far above any real run
        started = time.perf_counter()
        rc, sub.log = self.nbgrader(*args, timeout=limit)
        if rc != 0 and "add_missing_grade_cells" in sub.log:
            # nbgrader 0.9.6 crashes putting back a test cell whose answer cell was deleted too: grade
            # without putting cells back; the missing test cells then score 0 (flagged in the gradebook)
            rc, retry_log = self.nbgrader(*args, "--OverwriteCells.add_missing_cells=False", timeout=limit)
            sub.log += "\n[graded again without putting deleted cells back]\n" + retry_log
        sub.seconds = time.perf_counter() - started
        graded = self.path("autograded", sub.student)
        if rc != 0 or not graded.is_file():
            sub.problem = f"autograde failed ({_last_error(sub.log) or f'exit status {rc}'}): see logs/{sub.student}.log"
            return
        sub.notes.extend(execution_notes(nbformat.read(graded, as_version=4)))

    def export(self) -> list[dict[str, str]]:
        """``nbgrader export``: the rows of its CSV (student_id, score, max_score, ...)."""
        target = self.root / "export.csv"
        rc, log = self.nbgrader("export", "--to", str(target))
        if rc != 0 or not target.is_file():
            raise RuntimeError(f"nbgrader export failed:\n{log[-3000:]}")
        with target.open(newline="") as f:
            return list(csv.DictReader(f))

    def gradebook_scores(self, order: list[str]) -> dict[str, tuple[float, str]]:
        """Per student, from the gradebook: the total and ``function earned/max`` for each test cell
        in ``order``.
        """
        from nbgrader.api import MissingEntry

        scores = {}
        with self.gradebook() as gb:
            for student in gb.students:
                try:
                    submission = gb.find_submission(self.assignment, student.id)
                except MissingEntry:
                    continue
                grades = {g.cell.name: g for nb in submission.notebooks for g in nb.grades}
                details = "; ".join(
                    f"{name.removeprefix('test_')} {_fmt(grades[name].score)}/{_fmt(grades[name].max_score)}"
                    for name in order if name in grades
                )
                scores[student.id] = (float(submission.score), details)
        return scores

    def max_score(self) -> float:
        with self.gradebook() as gb:
            return float(gb.find_assignment(self.assignment).max_score)


def prepare(sub: Submission, assignment: str, released) -> None:
    """Validate the submission's notebook and note what was tampered with; a problem is recorded on ``sub``."""
    try:
        sub.notebook = read_valid_notebook(sub.path)
    except ValueError as exc:
        sub.problem = str(exc)
        return
    if sub.path.stem not in (assignment, sub.student):
        sub.notes.append(f"graded {sub.path.name} as {assignment}.ipynb")
    sub.notes.extend(tampering_notes(sub.notebook, released))


def grade_share(course: Course, pending: queue.SimpleQueue, log: Callable[[str], None]):
    """A worker: take submissions from ``pending`` until none is left, collect and autograde each (one
    nbgrader process per student) in ``course``, then generate feedback and export. Returns the
    submissions it graded and nbgrader's export rows (None if the export failed; the gradebook has them).
    """
    mine = []
    while True:
        try:
            sub = pending.get_nowait()
        except queue.Empty:
            break
        mine.append(sub)
        try:
            course.collect(sub)
            course.autograde(sub)
        except Exception as exc:  # e.g. a disk error: this student only
            sub.problem = f"autograde failed: {type(exc).__name__}: {_shorten(str(exc), 200)}"
        log(f"{sub.student:>24}: {sub.problem or 'autograded'} in {sub.seconds:.1f} s")
    if any(not sub.problem for sub in mine):
        rc, text = course.nbgrader("generate_feedback", course.assignment, "--force")
        if rc != 0:
            log(f"nbgrader generate_feedback reported errors:\n{text[-2000:]}")
    try:
        return mine, course.export()
    except RuntimeError as exc:
        log(str(exc))
        return mine, None


def grade(
    submissions_dir: Path,
    out: Path,
    assignment: str,
    course_root: Path | None = None,
    timeout: int | None = None,
    check_timeout: float | None = None,
    jobs: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Submission]:
    """Grade every submission in ``submissions_dir`` with nbgrader; write ``grades.csv``, ``feedback/``,
    ``logs/`` and nbgrader's own ``nbgrader_export.csv`` to ``out``. Returns the submissions, graded.

    ``jobs`` workers (default: one per CPU, at most 4) take the submissions one at a time; each works in
    its own copy of the course, with its own gradebook, so no two nbgrader processes write one database.
    """
    from concurrent.futures import ThreadPoolExecutor

    course_root = find_course_root() if course_root is None else Path(course_root)
    if not (course_root / "solutions" / assignment).is_dir():
        raise FileNotFoundError(f"no solutions/{assignment} in {course_root}")
    submissions = discover_submissions(Path(submissions_dir), assignment)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mt-grade-") as tmp:
        base = Course.create(Path(tmp) / "course", course_root, assignment, timeout, check_timeout)
        released = base.generate_assignment()
        for sub in submissions:
            if not sub.problem:
                prepare(sub, assignment, released)
            if sub.problem:
                log(f"{sub.student:>24}: {sub.problem}")
        pending = queue.SimpleQueue()
        for sub in submissions:
            if not sub.problem:
                pending.put(sub)
        jobs = max(1, min(jobs or min(4, os.cpu_count() or 1), pending.qsize()))
        courses = [base.clone(Path(tmp) / f"worker{i}") for i in range(jobs)]
        with ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(lambda course: grade_share(course, pending, log), courses))
        order = [c.metadata["nbgrader"]["grade_id"] for c in released.cells
                 if c.metadata.get("nbgrader", {}).get("grade")]
        for course, (share, rows) in zip(courses, results):
            record(course, share, rows, order, out)
        write_export(out / "nbgrader_export.csv", [row for _, rows in results if rows for row in rows])
        write_grades(out / "grades.csv", submissions, base.max_score())
    return submissions


def record(course: Course, share: list[Submission], rows: list[dict[str, str]] | None, order: list[str],
           out: Path) -> None:
    """Scores (from nbgrader's export, else its gradebook), per-cell details, feedback and logs of one
    worker's students.
    """
    exported = {row["student_id"]: float(row["score"]) for row in rows or []}
    in_gradebook = course.gradebook_scores(order)
    for sub in share:
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        (logs / f"{sub.student}.log").write_text(sub.log)
        if sub.problem:
            continue
        if sub.student not in in_gradebook:
            sub.problem = "autograded, but missing from the gradebook: see logs/"
            continue
        sub.score, sub.details = in_gradebook[sub.student]
        if sub.student in exported:
            sub.score = exported[sub.student]
        else:
            sub.notes.append("score read from the gradebook: nbgrader export failed")
        feedback = course.root / "feedback" / sub.student / course.assignment
        if feedback.is_dir():
            shutil.copytree(feedback, out / "feedback" / sub.student, dirs_exist_ok=True)
        else:
            sub.notes.append("no feedback generated: see logs/")


def write_export(path: Path, rows: list[dict[str, str]]) -> None:
    """nbgrader's export rows of every worker, as one CSV."""
    if not rows:
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["student_id"]))


def status_of(sub: Submission) -> str:
    """The status column: ``graded`` or the problem, followed by any notes."""
    return "; ".join([sub.problem or "graded", *sub.notes])


def write_grades(path: Path, submissions: list[Submission], max_score: float) -> None:
    """``grades.csv``: one row per submission, whatever happened to it."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "score", "max_score", "status", "details", "seconds"])
        for s in sorted(submissions, key=lambda s: s.student):
            writer.writerow([s.student, _fmt(s.score), _fmt(max_score), status_of(s), s.details, f"{s.seconds:.1f}"])


def main(argv: list[str] | None = None) -> int:
    """``python -m mastering_transformers.grading grade --submissions DIR --out OUTDIR [...]``."""
    parser = argparse.ArgumentParser(prog="python -m mastering_transformers.grading",
                                     description="Autograde the course's nbgrader exercises.")
    commands = parser.add_subparsers(dest="command", required=True)
    g = commands.add_parser("grade", help="autograde a folder of submissions with nbgrader")
    g.add_argument("--submissions", required=True, type=Path,
                   help="folder with <student>/<assignment>.ipynb or <student>.ipynb")
    g.add_argument("--out", required=True, type=Path, help="where grades.csv, feedback/ and logs/ go")
    g.add_argument("--assignment", required=True, help="the assignment to grade, e.g. ps02_attention")
    g.add_argument("--course", type=Path, default=None, help="course root (default: found from the cwd)")
    g.add_argument("--timeout", type=int, default=None,
                   help="seconds per notebook cell (nbgrader's Execute.timeout; default from nbgrader_config.py)")
    g.add_argument("--check-timeout", type=float, default=None,
                   help=f"seconds per hidden check (default {DEFAULT_CHECK_TIMEOUT:g})")
    g.add_argument("--jobs", type=int, default=None, help="students graded at once (default: CPUs, at most 4)")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"--submissions {args.submissions} is not a folder")
    started = time.perf_counter()
    subs = grade(args.submissions, args.out, args.assignment, args.course, args.timeout, args.check_timeout, args.jobs)
    graded = sum(not s.problem for s in subs)
    print(f"{graded} of {len(subs)} submissions graded in {time.perf_counter() - started:.0f} s; "
          f"grades in {args.out / 'grades.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
