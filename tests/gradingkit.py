"""Helpers for the grading tests: build submissions from an assignment's notebooks, grade a folder of
them with the real nbgrader pipeline (through the grading CLI) and read back scores and feedback.

An assignment ``psNN_topic`` is made of
- ``solutions/psNN_topic/psNN_topic.ipynb``: the nbgrader source; each graded function ``f`` has an answer
  cell with grade_id ``f`` and a locked test cell ``test_f`` (the hidden checks run outside the notebook);
- ``exercises/psNN_topic/psNN_topic.ipynb``: the release generated from it;
- ``tests/hidden/psNN/test_f.py``: the hidden checks of ``f``;
- ``tests/planted_bugs/psNN.py``: ``BUGS = {name: (function, buggy cell source, {checks it must fail})}``.
"""

from __future__ import annotations

import copy
import csv
import html
import importlib.util
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import nbformat

from mastering_transformers.grading import check_name, load_checks
from mastering_transformers.grading.checker import hidden_check_file

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and p.name.startswith("ps"))


@dataclass(frozen=True)
class Assignment:
    name: str  # psNN_topic

    @property
    def short(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def solution_path(self) -> Path:
        return ROOT / "solutions" / self.name / f"{self.name}.ipynb"

    @property
    def exercise_path(self) -> Path:
        return ROOT / "exercises" / self.name / f"{self.name}.ipynb"

    def solution(self):
        return nbformat.read(self.solution_path, as_version=4)

    def exercise(self):
        return nbformat.read(self.exercise_path, as_version=4)

    @cached_property
    def functions(self) -> list[str]:
        """The graded functions, in notebook order: answer cells that have a ``test_<name>`` cell."""
        ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in self.solution().cells]
        return [i for i in ids if i and f"test_{i}" in ids]

    @cached_property
    def bugs(self) -> dict[str, tuple[str, str, set[str]]]:
        """The planted bugs of ``tests/planted_bugs/psNN.py``."""
        path = ROOT / "tests" / "planted_bugs" / f"{self.short}.py"
        spec = importlib.util.spec_from_file_location(f"planted_bugs_{self.short}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.BUGS

    def points(self, function: str) -> dict[str, float]:
        """check name -> points, from the hidden-check file."""
        tests, _ = load_checks(hidden_check_file(ROOT / "tests" / "hidden", self.name, function))
        return {t.__name__: t.points for t in tests}

    def check_names(self, function: str, tests: set[str] | None = None) -> set[tuple[str, str]]:
        """(function, readable check name) of the given checks (all of them when ``tests`` is None)."""
        checks, _ = load_checks(hidden_check_file(ROOT / "tests" / "hidden", self.name, function))
        return {(function, check_name(t)) for t in checks if tests is None or t.__name__ in tests}

    def max_score(self) -> float:
        """The total: the points of the test cells in the source notebook."""
        return sum(c.metadata["nbgrader"]["points"] for c in self.solution().cells
                   if c.metadata.get("nbgrader", {}).get("grade"))

    def solution_code(self, grade_id: str) -> str:
        """The solution cell without nbgrader's delimiter lines (what a student would write)."""
        lines = cell(self.solution(), grade_id).source.splitlines()
        return "\n".join(line for line in lines if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)

    def filled_exercise(self, keep_stub: tuple[str, ...] = ()):
        """The released exercise with the solution code typed into its answer cells."""
        nb = self.exercise()
        for name in self.functions:
            if name not in keep_stub:
                nb = replaced(nb, name, self.solution_code(name))
        return nb

    def with_bugs(self, bugs: list[str]):
        """The solution with the buggy answer cells of ``bugs`` (at most one bug per function)."""
        nb = self.solution()
        for bug in bugs:
            function, code, _ = self.bugs[bug]
            nb = replaced(nb, function, code)
        return nb

    def bug_batches(self) -> dict[str, list[str]]:
        """The planted bugs packed into as few submissions as possible, at most one bug per function in each:
        ``{"bugs_1": [...], ...}``. The hidden checks of one function see only that function's bug (a function
        that calls an earlier one gets the reference version through ISOLATE), so each bug must still lose
        exactly its own checks; a leak between functions would show up as a wrong set of failed checks.
        """
        batches: list[dict[str, str]] = []  # function -> bug
        for bug in sorted(self.bugs):
            function = self.bugs[bug][0]
            target = next((b for b in batches if function not in b), None)
            if target is None:
                batches.append(target := {})
            target[function] = bug
        return {f"bugs_{i + 1}": sorted(b.values()) for i, b in enumerate(batches)}


def cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def replaced(nb, grade_id: str, source: str):
    """A copy of ``nb`` with the source of cell ``grade_id`` replaced."""
    nb = copy.deepcopy(nb)
    cell(nb, grade_id).source = source.strip("\n")
    return nb


def without_cell(nb, grade_id: str):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


def write_submissions(folder: Path, assignment: Assignment, submissions: dict) -> None:
    """``submissions``: student id -> notebook, or a str of raw file content. Students whose id starts with
    ``bug`` are written as ``<student>.ipynb``, the others as ``<student>/<assignment>.ipynb`` (both layouts).
    """
    for student, content in submissions.items():
        if student.startswith("bug"):
            path = folder / f"{student}.ipynb"
        else:
            path = folder / student / f"{assignment.name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            nbformat.write(content, path)


@dataclass
class Graded:
    """What one grading run wrote: grades.csv rows by student, and the output folder."""

    assignment: Assignment
    rows: list[dict[str, str]]
    out: Path
    seconds: float
    log: str

    @property
    def by_student(self) -> dict[str, dict[str, str]]:
        return {r["student_id"]: r for r in self.rows}

    def score(self, student: str) -> float:
        return float(self.by_student[student]["score"])

    def status(self, student: str) -> str:
        return self.by_student[student]["status"]

    def feedback_path(self, student: str) -> Path:
        return self.out / "feedback" / student / f"{self.assignment.name}.html"

    def feedback_lines(self, student: str) -> list[tuple[str, str, str]]:
        """(function, ✓ or ✗, check name) for every hidden-check line of the student's feedback page."""
        text = html.unescape(re.sub(r"<[^>]+>", "", self.feedback_path(student).read_text(encoding="utf-8")))
        lines, function = [], None
        for line in text.splitlines():
            header = re.match(r"\s*Hidden checks for (\w+):", line)
            if header:
                function = header.group(1)
            found = re.match(r"\s*([✓✗]) [\d.]+/[\d.]+  (.+?)(?: — .*)?$", line)
            if found and function:
                lines.append((function, found.group(1), found.group(2).split("  [your code printed")[0]))
        return lines

    def failed(self, student: str) -> set[tuple[str, str]]:
        return {(f, name) for f, mark, name in self.feedback_lines(student) if mark == "✗"}


def grade(assignment: Assignment, submissions: dict, tmp: Path, load_timeout: float = 10,
          check_timeout: float = 3, extra_dirs: tuple[str, ...] = (), extra_files: dict | None = None,
          expect_rc: int = 0, symlinks: dict | None = None) -> Graded:
    """Write ``submissions`` (and ``extra_files``: name -> bytes or str, written as they are) to a folder
    and grade it in one run of the grading CLI."""
    folder, out = tmp / "submissions", tmp / "grading_output"
    folder.mkdir(parents=True)
    write_submissions(folder, assignment, submissions)
    for name in extra_dirs:
        (folder / name).mkdir()
    for name, content in (extra_files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for name, target in (symlinks or {}).items():
        (folder / name).symlink_to(target)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mastering_transformers.grading", "grade", "--submissions", str(folder),
         "--out", str(out), "--assignment", assignment.name, "--load-timeout", str(load_timeout),
         "--check-timeout", str(check_timeout)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == expect_rc, f"the grading CLI exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    with (out / "grades.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    print(f"graded {len(rows)} {assignment.name} submissions in {seconds:.0f} s\n{proc.stdout}")
    return Graded(assignment, rows, out, seconds, proc.stdout)
