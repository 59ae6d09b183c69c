"""nbgrader's autograde step, made safe: ``TrustedChecks`` replaces nbgrader's ``Execute`` preprocessor.

``nbgrader autograde`` still sanitises the submission (locked cells restored from the gradebook), writes
the autograded notebook and fills the gradebook; only the execution changes. Instead of running the whole
notebook in a kernel, ``TrustedChecks`` takes the set-up cells and the answer cells, runs them in the
sandboxed worker, runs the hidden checks here, in nbgrader's own process, and writes one line per check
into each test cell's output. ``SaveTrustedGrades`` then records the checker's points in the gradebook;
nothing the notebook displays is read back as a score.

Before the first student, the checks are run against the instructor's solution (the *self-test*): a
missing check file, a failing reference or points that do not add up stop the assignment with a course
error instead of grading anyone. The hidden checks and the package are fingerprinted before and after
every student.

Configured in ``nbgrader_config.py``; ``MT_HIDDEN_TESTS``, ``MT_CHECK_TIMEOUT``, ``MT_LOAD_TIMEOUT``,
``MT_SANDBOX_UID`` and ``MT_UNSAFE_NO_SANDBOX=1`` (set by the grading CLI) override the defaults.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor, SaveAutoGrades
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool, Float, Int, Unicode

from .checker import (
    DEFAULT_CHECK_TIMEOUT,
    DEFAULT_LOAD_TIMEOUT,
    Cell,
    CourseError,
    FunctionReport,
    Program,
    fingerprint,
    fmt,
    grade_program,
    hidden_check_file,
    load_checks,
)
from .sandbox import PACKAGE, SandboxConfig

RESULTS_KEY = "mt_trusted_scores"
_MAGIC = re.compile(r"^\s*[%!]")


def _strip_magics(source: str) -> str:
    """IPython line magics and shell escapes (``%matplotlib inline``) become comments: plain Python runs."""
    return "\n".join(f"# {line}" if _MAGIC.match(line) else line for line in source.splitlines())


def program_of(nb) -> Program:
    """The set-up cells (code cells before the first nbgrader cell), every answer cell (autograded
    solution cells, in notebook order) and the graded functions (test cells ``test_<f>``, in order).
    """
    cells, functions, seen_nbgrader = [], [], False
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta:
            seen_nbgrader = True
        if cell.cell_type != "code":
            continue
        if not meta and not seen_nbgrader:
            cells.append(Cell(_strip_magics(cell.source)))
        elif is_solution(cell) and not is_grade(cell):
            cells.append(Cell(_strip_magics(cell.source), meta.get("grade_id")))
        elif is_grade(cell) and not is_solution(cell) and meta.get("grade_id", "").startswith("test_"):
            functions.append(meta["grade_id"].removeprefix("test_"))
    return Program(cells, functions)


def solution_program(path: Path) -> Program:
    """The instructor's source notebook as a program (for the self-test)."""
    return program_of(nbformat.read(path, as_version=4))


def _stream(text: str):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


class TrustedChecks(NbGraderPreprocessor):
    """Run the student's answers in the sandbox and the hidden checks here; write the feedback lines."""

    hidden_tests = Unicode("", help="folder with psNN/test_<function>.py (default: <course root>/tests/hidden)"
                           ).tag(config=True)
    check_timeout = Float(DEFAULT_CHECK_TIMEOUT, help="seconds per hidden check").tag(config=True)
    load_timeout = Float(DEFAULT_LOAD_TIMEOUT, help="seconds per top-level statement of a cell").tag(config=True)
    unsafe_no_sandbox = Bool(False, help="run student code without the sandbox (never for real students)"
                             ).tag(config=True)
    sandbox_uid = Int(61000, help="the unprivileged uid the worker becomes when grading runs as root"
                      ).tag(config=True)
    results_dir = Unicode("", help="where a JSON report per student is written (default: none)").tag(config=True)

    _verified: dict[str, str] = {}  # assignment -> fingerprint that passed the self-test (this process)
    _broken: dict[str, str] = {}  # assignment -> the course error found (later students fail fast)

    def _settings(self, root: Path) -> tuple[Path, float, float, SandboxConfig]:
        env = os.environ
        hidden = Path(env.get("MT_HIDDEN_TESTS") or self.hidden_tests or root / "tests" / "hidden")
        check_timeout = float(env.get("MT_CHECK_TIMEOUT") or self.check_timeout)
        load_timeout = float(env.get("MT_LOAD_TIMEOUT") or self.load_timeout)
        unsafe = env.get("MT_UNSAFE_NO_SANDBOX") == "1" or self.unsafe_no_sandbox
        uid = int(env.get("MT_SANDBOX_UID") or self.sandbox_uid)
        return hidden, check_timeout, load_timeout, SandboxConfig(enabled=not unsafe, uid=uid)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        assignment, student = info["assignment"], info["student"]
        root = Path(self.config.CourseDirectory.get("root") or os.getcwd())
        hidden, check_timeout, load_timeout, config = self._settings(root)
        guarded = [hidden / assignment.split("_", 1)[0], PACKAGE / "grading"]  # the trusted code
        try:
            before = self._self_test(root, assignment, hidden, config, guarded)
            started = time.perf_counter()
            reports = grade_program(program_of(nb), assignment, hidden, config, check_timeout, load_timeout)
            if fingerprint(guarded) != before:
                raise CourseError("the hidden checks or the course package changed while a student was graded")
        except CourseError as exc:
            self._broken[assignment] = str(exc)
            self._write_report(student, {"course_error": str(exc)})
            raise
        scores = {f"test_{r.name}": r for r in reports}
        self._write_cells(nb, scores)
        resources[RESULTS_KEY] = {grade_id: r.earned for grade_id, r in scores.items()}
        self._write_report(student, {
            "student": student, "assignment": assignment, "sandbox": config.enabled,
            "seconds": round(time.perf_counter() - started, 2),
            "functions": [{"name": r.name, "earned": r.earned, "points": r.points, "notes": r.notes,
                           "checks": [[c.name, c.earned, c.points, c.message] for c in r.results]}
                          for r in reports],
        })
        return nb, resources

    def _self_test(self, root: Path, assignment: str, hidden: Path, config: SandboxConfig, guarded) -> str:
        """Fingerprint of the checks and package, after proving once per process that the solution
        scores full marks against them."""
        if assignment in self._broken:
            raise CourseError(self._broken[assignment])
        before = fingerprint(guarded)
        if self._verified.get(assignment) == before:
            return before
        source_dir = self.config.CourseDirectory.get("source_directory") or "source"
        source = root / source_dir / assignment / f"{assignment}.ipynb"
        if not source.is_file():
            raise CourseError(f"no source notebook for {assignment} to check the hidden checks against")
        program = solution_program(source)
        source_nb = nbformat.read(source, as_version=4)
        points = {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
                  for c in source_nb.cells if is_grade(c)}
        for function in program.functions:
            tests, _ = load_checks(hidden_check_file(hidden, assignment, function))
            total = sum(t.points for t in tests)
            if abs(total - points.get(f"test_{function}", -1)) > 1e-9:
                raise CourseError(f"the checks of {function} are worth {fmt(total)} points but its test cell "
                                  f"is worth {fmt(points.get(f'test_{function}', 0))}")
        reports = grade_program(program, assignment, hidden, config, max(60.0, 6 * self.check_timeout),
                                max(120.0, self.load_timeout))
        failing = [f"{r.name}: {c.name} ({c.message})" for r in reports for c in r.results if not c.passed]
        if failing:
            raise CourseError(f"the solution of {assignment} fails its own hidden checks: " + "; ".join(failing)[:2000])
        self._verified[assignment] = before
        return before

    @staticmethod
    def _write_cells(nb, scores: dict[str, FunctionReport]) -> None:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            cell.outputs = []
            cell.execution_count = None
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            report = scores.get(grade_id)
            if report is not None and is_grade(cell):
                cell.outputs = [_stream(report.text() + "\n"), nbformat.v4.new_output(
                    "execute_result", data={"text/plain": fmt(report.earned)}, execution_count=None)]

    def _write_report(self, student: str, data: dict) -> None:
        folder = os.environ.get("MT_RESULTS_DIR") or self.results_dir
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / f"{student}.json").write_text(json.dumps(data, indent=1))


class SaveTrustedGrades(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades``, with each test cell's score taken from the trusted checker."""

    def preprocess(self, nb, resources):
        self._trusted = resources.get(RESULTS_KEY)
        if self._trusted is None:
            raise CourseError("no trusted scores: TrustedChecks must run before SaveTrustedGrades")
        return super().preprocess(nb, resources)

    def _add_score(self, cell, resources) -> None:
        grade = self.gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"], self.notebook_id,
                                          self.assignment_id, self.student_id)
        # A grade cell the checker does not know (a manually graded answer) is left for a person.
        score = self._trusted.get(cell.metadata["nbgrader"]["grade_id"])
        grade.auto_score = score
        grade.needs_manual_grade = score is None or grade.manual_score is not None
        self.gradebook.db.commit()
