"""Unit tests of the hidden-check runner, `mastering_transformers.grading.run_checks`, in process.

Each test writes a small hidden-check file for a made-up assignment `ps99_demo` and grades a function
with it: points are summed, student exceptions and endless loops become messages, nothing reaches
stderr (at the Python level or the file-descriptor level), and helper isolation is undone afterwards.
The last tests run the real ps02 hidden checks against the real solution.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from mastering_transformers import grading
from mastering_transformers.grading import check, discover_submissions, find_hidden_tests, run_checks

ROOT = Path(__file__).resolve().parents[1]

DOUBLE_CHECKS = '''
from mastering_transformers.grading import check

@check(points=1)
def test_small(double):
    """doubles 2"""
    assert double(2) == 4, f"double(2) must be 4; got {double(2)}"

@check(points=2)
def test_negative(double):
    """doubles -3"""
    assert double(-3) == -6, f"double(-3) must be -6; got {double(-3)}"

@check(points=0.5)
def test_zero(double):
    """doubles 0"""
    assert double(0) + 0 == 0, "double(0) must be 0"
'''


@pytest.fixture
def hidden(tmp_path, monkeypatch):
    """Write hidden checks for ps99_demo: ``hidden("double", source)`` -> tests/hidden/ps99/test_double.py."""
    root = tmp_path / "hidden"
    (root / "ps99").mkdir(parents=True)
    monkeypatch.setenv("MT_HIDDEN_TESTS", str(root))

    def write(function: str, source: str = DOUBLE_CHECKS) -> None:
        (root / "ps99" / f"test_{function}.py").write_text(textwrap.dedent(source))

    return write


def _lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip().startswith(("✓", "✗"))]


def test_points_of_the_passing_checks_are_summed(hidden, capsys):
    hidden("double")
    earned = run_checks("ps99_demo", "double", lambda x: 2 * x if x >= 0 else x)
    assert earned == 1.5
    lines = _lines(capsys.readouterr().out)
    assert [line[:8] for line in lines] == ["✓ 1/1  d", "✗ 0/2  d", "✓ 0.5/0."]
    assert "double(-3) must be -6; got -3" in lines[1]


def test_a_correct_function_earns_every_point(hidden, capsys):
    hidden("double")
    assert run_checks("ps99_demo", "double", {"double": lambda x: 2 * x}) == 3.5
    assert "double: 3.5/3.5 points" in capsys.readouterr().out


def test_nothing_the_student_code_writes_reaches_stderr(hidden, capfd):
    hidden("double")

    def noisy(x):
        import os
        import warnings

        print("to stdout")
        print("to stderr", file=sys.stderr)
        warnings.warn("a student warning")
        os.write(2, b"to file descriptor 2\n")
        return 2 * x

    assert run_checks("ps99_demo", "double", noisy) == 3.5
    out, err = capfd.readouterr()
    assert err == ""
    assert len(_lines(out)) == 3 and "to file descriptor 2" in out and "a student warning" in out


@pytest.mark.parametrize("error, message", [
    (ValueError("boom"), "double(2) raised ValueError: boom"),
    (ZeroDivisionError("division by zero"), "raised ZeroDivisionError: division by zero"),
    (SystemExit(3), "raised SystemExit: 3"),
    (NotImplementedError(), "not implemented yet: replace `raise NotImplementedError()`"),
])
def test_exceptions_from_student_code_become_messages(hidden, capfd, error, message):
    hidden("double")

    def broken(x):
        raise error

    assert run_checks("ps99_demo", "double", broken) == 0.0
    out, err = capfd.readouterr()
    assert err == "" and message in out and len(_lines(out)) == 3


def test_a_result_of_the_wrong_type_is_explained(hidden, capsys):
    hidden("double")
    assert run_checks("ps99_demo", "double", lambda x: None) == 0.0
    assert "your result could not be checked (TypeError" in capsys.readouterr().out


@pytest.mark.parametrize("namespace, message", [
    ({}, "`double` is not defined: keep the name `def double(...)`"),
    ({"double": 3}, "`double` is a int, not a function"),
])
def test_a_missing_function_scores_zero_with_a_clear_line(hidden, capfd, namespace, message):
    hidden("double")
    assert run_checks("ps99_demo", "double", namespace) == 0.0
    out, err = capfd.readouterr()
    assert err == "" and message in out and len(_lines(out)) == 3


def test_an_endless_loop_is_stopped_by_the_check_time_limit(hidden, capsys):
    hidden("double")

    def loops(x):
        while True:
            try:
                time.sleep(0.05)
            except Exception:  # a student's catch-all must not swallow the time limit
                pass

    started = time.perf_counter()
    assert run_checks("ps99_demo", "double", loops, limit=0.3) == 0.0
    assert time.perf_counter() - started < 3
    lines = _lines(capsys.readouterr().out)
    assert "stopped after 0.3 s: does your code loop forever?" in lines[0]
    assert all("not run: an earlier check ran out of time" in line for line in lines[1:])


def test_the_time_limit_is_read_from_the_environment(hidden, monkeypatch, capsys):
    hidden("double", '''
        import time
        from mastering_transformers.grading import check

        @check(points=1)
        def test_slow(double):
            time.sleep(0.5)
    ''')
    monkeypatch.setenv("MT_CHECK_TIMEOUT", "0.1")
    assert run_checks("ps99_demo", "double", lambda x: x) == 0.0
    monkeypatch.setenv("MT_CHECK_TIMEOUT", "5")
    assert run_checks("ps99_demo", "double", lambda x: x) == 1.0


def test_missing_or_broken_hidden_checks_score_zero_without_raising(hidden, capfd):
    hidden("unmarked", "def test_x(unmarked):\n    pass\n")
    assert run_checks("ps99_demo", "nothing_here", lambda x: x) == 0.0
    assert run_checks("ps99_demo", "unmarked", lambda x: x) == 0.0
    out, err = capfd.readouterr()
    assert err == ""
    assert "the hidden checks for nothing_here could not run (FileNotFoundError" in out
    assert "give every check its points with @check(points=...): ['test_x']" in out


def test_isolate_swaps_the_students_helpers_only_while_the_checks_run(hidden):
    hidden("outer", '''
        from mastering_transformers.grading import check

        ISOLATE = {"helper": lambda x: x + 1}

        @check(points=1)
        def test_uses_helper(outer):
            assert outer(1) == 4, "outer(1) must be 2 * helper(1) = 4"
    ''')
    namespace = {}
    exec("def helper(x):\n    return x - 1\n\ndef outer(x):\n    return 2 * helper(x)\n", namespace)
    buggy_helper = namespace["helper"]
    assert run_checks("ps99_demo", "outer", namespace) == 1.0
    assert namespace["helper"] is buggy_helper and namespace["outer"](1) == 0


def test_check_needs_positive_points_and_function_names_are_identifiers():
    with pytest.raises(ValueError, match="positive number of points"):
        check(points=0)
    with pytest.raises(ValueError, match="not a function name"):
        grading.hidden_check_file("ps02_attention", "../../etc/passwd")


def test_hidden_tests_are_found_from_env_then_upwards_then_beside_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("MT_HIDDEN_TESTS", str(tmp_path / "elsewhere"))
    assert find_hidden_tests() == tmp_path / "elsewhere"
    monkeypatch.delenv("MT_HIDDEN_TESTS")
    (tmp_path / "course" / "tests" / "hidden").mkdir(parents=True)
    nested = tmp_path / "course" / "autograded" / "alice" / "ps02_attention"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert find_hidden_tests() == tmp_path / "course" / "tests" / "hidden"
    monkeypatch.chdir(tmp_path)
    assert find_hidden_tests(tmp_path) == ROOT / "tests" / "hidden"


def test_submissions_are_discovered_in_both_layouts_once_each(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "ps02_attention.ipynb").write_text("{}")
    (tmp_path / "alice.ipynb").write_text("{}")
    (tmp_path / "bob.ipynb").write_text("{}")
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "my copy.ipynb").write_text("{}")
    (tmp_path / "dave").mkdir()
    (tmp_path / "notes.txt").write_text("not a submission")
    (tmp_path / "bad id!.ipynb").write_text("{}")
    subs = {s.student: s for s in discover_submissions(tmp_path, "ps02_attention")}
    assert sorted(subs) == ["alice", "bad id!", "bob", "carol", "dave"]
    assert subs["alice"].path == tmp_path / "alice" / "ps02_attention.ipynb"
    assert subs["alice"].notes == ["ignored a second submission alice.ipynb"]
    assert subs["carol"].path.name == "my copy.ipynb" and not subs["carol"].problem
    assert subs["dave"].problem == "missing notebook: no ps02_attention.ipynb in dave/"
    assert subs["bad id!"].problem.startswith("invalid student id")


# The real ps02 checks --------------------------------------------------------------------------------

PS02 = ["attention_scores", "stable_softmax", "causal_mask", "attention"]
SOLUTION = ROOT / "solutions" / "ps02_attention" / "ps02_attention.ipynb"


def _solution_namespace() -> dict:
    """The solution notebook's code run in one namespace, as in a kernel, hidden test cells left out."""
    namespace: dict = {}
    for cell in nbformat.read(SOLUTION, as_version=4).cells:
        if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("grade"):
            exec(cell.source, namespace)
    return namespace


def test_each_ps02_test_cell_is_worth_the_points_of_its_hidden_checks():
    cells = [c for c in nbformat.read(SOLUTION, as_version=4).cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert [c.metadata["nbgrader"]["grade_id"] for c in cells] == [f"test_{f}" for f in PS02]
    for cell in cells:
        function = cell.metadata["nbgrader"]["grade_id"].removeprefix("test_")
        tests, _ = grading.load_checks(grading.hidden_check_file("ps02_attention", function, ROOT / "tests" / "hidden"))
        assert sum(t.points for t in tests) == cell.metadata["nbgrader"]["points"], function
        assert f'run_checks("ps02_attention", "{function}", globals())' in cell.source


@pytest.mark.parametrize("function", PS02)
def test_the_ps02_solution_passes_every_hidden_check(function, monkeypatch, capfd):
    monkeypatch.delenv("MT_HIDDEN_TESTS", raising=False)
    namespace = _solution_namespace()
    capfd.readouterr()
    earned = run_checks("ps02_attention", function, namespace)
    out, err = capfd.readouterr()
    lines = _lines(out)
    assert err == "" and lines and all(line.startswith("✓") for line in lines), out
    assert earned == sum(float(line.split()[1].split("/")[1]) for line in lines)
