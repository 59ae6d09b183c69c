"""The student versions committed in exercises/ are exactly what nbgrader generates from solutions/.

A fresh `nbgrader generate_assignment` runs in a temporary copy of the course (config and solutions
only) and its output is compared with the committed files. Only metadata that records the machine
that last saved a notebook (`language_info`) is ignored. The fix for a failure is `make exercises`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gradingkit import ASSIGNMENTS, ROOT

VOLATILE_METADATA = ("language_info",)  # Python version etc. of whoever saved the notebook last


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """exercises/ as a fresh nbgrader generate_assignment writes it, in a temporary course."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for assignment in ASSIGNMENTS:
        proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"],
                              cwd=course, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"nbgrader generate_assignment {assignment} failed:\n{proc.stdout}{proc.stderr}"
    return course / "exercises"


def _comparable(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    for key in VOLATILE_METADATA:
        nb.metadata.pop(key, None)
    return nb


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_there_is_an_exercise_for_every_solution_and_no_other():
    assert ASSIGNMENTS, "no assignments in solutions/"
    committed = sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir())
    assert committed == ASSIGNMENTS, "exercises/ and solutions/ hold different assignments: run `make exercises`"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_committed_exercise_equals_a_fresh_generation(regenerated, assignment):
    committed, fresh = ROOT / "exercises" / assignment, regenerated / assignment
    assert _files(committed) == _files(fresh), f"exercises/{assignment}/ holds other files: run `make exercises`"
    for name in _files(fresh):
        if not name.endswith(".ipynb"):
            assert (committed / name).read_bytes() == (fresh / name).read_bytes(), name
            continue
        ours, theirs = _comparable(committed / name), _comparable(fresh / name)
        changed = [i for i, (a, b) in enumerate(zip(ours.cells, theirs.cells)) if a != b]
        assert len(ours.cells) == len(theirs.cells) and not changed and ours == theirs, (
            f"exercises/{assignment}/{name} is out of date (cells {changed} differ, "
            f"{len(ours.cells)} vs {len(theirs.cells)} cells): run `make exercises`"
        )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_version_hides_solutions_and_hidden_tests(assignment):
    nb = nbformat.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    for secret in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "run_checks"):
        assert secret not in text, f"the student version of {assignment} contains {secret!r}"
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert answers and all(c.source.rstrip().endswith("raise NotImplementedError()") for c in answers)
    assert tests and all(c.metadata["nbgrader"]["locked"] and c.metadata["nbgrader"]["points"] > 0 for c in tests)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "the release must have no outputs"
