"""Broken and hostile submissions, graded in one nbgrader run together with good ones (ps02_attention).

Each bad submission must get a clear recorded result (a score, a status that says what happened, feedback
that explains it) and must not move anyone else's grade: the good submissions in the same run still score
full marks. The solution, untouched exercise and planted bugs of every assignment are tested in
test_grading_assignments.py.
"""

from __future__ import annotations

import csv
import html

import pytest

from gradingkit import Assignment, cell, grade, replaced, without_cell

A = Assignment("ps02_attention")
CELL_TIMEOUT = 10  # seconds per notebook cell in this run (the course default is 30)
CHECK_TIMEOUT = 3  # seconds per hidden check in this run


def _edited_test_cell():
    """attention left unimplemented, its test cell replaced by the full points and its points raised."""
    nb = replaced(A.filled_exercise(keep_stub=("attention",)), "test_attention", "4")
    cell(nb, "test_attention").metadata["nbgrader"]["points"] = 40
    return nb


def _corrupt_metadata():
    """A test cell whose nbgrader metadata no longer parses: nbgrader itself fails on this notebook."""
    nb = A.solution()
    cell(nb, "test_attention").metadata["nbgrader"]["points"] = "ten"
    return nb


WRITES_STDERR = """
import os, sys, warnings

def attention_scores(q, k):
    print("debugging attention_scores", file=sys.stderr)
    warnings.warn("a warning raised by the student's code")
    os.write(2, b"written to file descriptor 2\\n")
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])

print("top-level output to stderr", file=sys.stderr)
"""

# Passes the visible tests (T <= 4) but never ends for longer sequences: the increment is on one branch.
LOOPS_FOR_LONG_SEQUENCES = """
def causal_mask(T):
    mask = torch.zeros(T, T, dtype=torch.bool)
    i = 0
    while i < T:
        mask[i, : i + 1] = True
        if i < 4:
            i += 1
    return mask
"""


def _submissions() -> dict:
    sol = A.solution()
    return {
        "solution": sol,
        "filled_exercise": A.filled_exercise(),
        "cell_raises": replaced(sol, "causal_mask", "print(undefined_name)\n" + A.solution_code("causal_mask")),
        "function_missing": replaced(sol, "attention",
                                     A.solution_code("attention").replace("def attention(", "def my_attention(")),
        "loop_at_top_level": replaced(sol, "stable_softmax", A.solution_code("stable_softmax") + "\n\nwhile True:\n    pass"),
        "loop_in_function": replaced(sol, "causal_mask", LOOPS_FOR_LONG_SEQUENCES),
        "writes_stderr": replaced(sol, "attention_scores", WRITES_STDERR),
        "test_cell_deleted": without_cell(A.filled_exercise(), "test_stable_softmax"),
        "test_cell_edited": _edited_test_cell(),
        "section_deleted": without_cell(without_cell(sol, "causal_mask"), "test_causal_mask"),
        "corrupt_metadata": _corrupt_metadata(),
        "invalid_json": A.solution_path.read_text()[:500],
        "not_a_notebook": '{"cells": 3, "metadata": {}}',
        "fails_schema": '{"cells": 3, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return grade(A, _submissions(), tmp_path_factory.mktemp("ps02_hostile"), CELL_TIMEOUT, CHECK_TIMEOUT,
                 extra_dirs=("empty_folder",))


def test_every_submission_gets_exactly_one_row(graded):
    assert sorted(r["student_id"] for r in graded.rows) == sorted([*_submissions(), "empty_folder"])
    assert all(float(r["max_score"]) == A.max_score() == 14 for r in graded.rows)


def test_good_submissions_in_the_same_run_keep_full_marks(graded):
    for student in ["solution", "filled_exercise"]:
        assert graded.score(student) == A.max_score() and graded.status(student) == "graded"


@pytest.mark.parametrize("student, score, status", [
    ("cell_raises", 11, "causal_mask raised NameError"),  # its cell fails before the def
    ("function_missing", 10, "graded"),
    ("loop_at_top_level", 14, "stable_softmax ran past the time limit and was interrupted"),
    ("loop_in_function", 11, "graded"),  # causal_mask's checks stop at the time limit
    ("writes_stderr", 14, "graded"),
    ("test_cell_deleted", 14, "locked cell test_stable_softmax was deleted: nbgrader put it back"),
    ("test_cell_edited", 10, "locked cell test_attention was edited: nbgrader restored it"),
    ("section_deleted", 11, "locked cell test_causal_mask was deleted with the cell causal_mask before it: "
                            "nbgrader cannot put it back, so it scores 0"),
])
def test_broken_submission_is_graded_with_a_clear_status(graded, student, score, status):
    row = graded.by_student[student]
    assert graded.score(student) == score, row
    assert row["status"].startswith("graded") and status in row["status"], row["status"]


def test_a_missing_function_and_an_endless_loop_are_explained_in_the_feedback(graded):
    missing = graded.feedback_path("function_missing").read_text()
    assert "`attention` is not defined" in html.unescape(missing)
    assert graded.failed("function_missing") == A.check_names("attention")
    loop = graded.feedback_path("loop_in_function").read_text()
    assert f"stopped after {CHECK_TIMEOUT} s" in loop and "not run: an earlier check ran out of time" in loop
    assert graded.failed("loop_in_function") == A.check_names("causal_mask")


def test_output_to_stderr_is_shown_in_the_feedback_not_penalised(graded):
    text = html.unescape(graded.feedback_path("writes_stderr").read_text())
    assert "your code printed:" in text and "debugging attention_scores" in text
    assert not graded.failed("writes_stderr")


@pytest.mark.parametrize("student, status", [
    ("corrupt_metadata", "autograde failed (ValueError: could not convert string to float: 'ten'): "
                         "see logs/corrupt_metadata.log"),
    ("invalid_json", "invalid notebook: not valid JSON"),
    ("not_a_notebook", "invalid notebook: valid JSON, but not a Jupyter notebook"),
    ("fails_schema", "invalid notebook: data.cells must be array"),
    ("empty_folder", "missing notebook: no ps02_attention.ipynb in empty_folder/"),
])
def test_unreadable_submission_scores_zero_with_the_reason(graded, student, status):
    row = graded.by_student[student]
    assert graded.score(student) == 0 and row["status"].startswith(status), row["status"]
    assert not (graded.out / "feedback" / student).exists()


def test_scores_agree_with_nbgrader_export(graded):
    with (graded.out / "nbgrader_export.csv").open(newline="") as f:
        exported = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    graded_ids = {r["student_id"] for r in graded.rows if r["status"].startswith("graded")}
    assert graded_ids <= set(exported)
    assert exported == {student: graded.score(student) for student in exported}


def test_every_graded_student_gets_feedback_and_a_log(graded):
    for row in graded.rows:
        student = row["student_id"]
        assert graded.feedback_path(student).is_file() == row["status"].startswith("graded"), row
        if student != "empty_folder" and not row["status"].startswith("invalid"):
            assert (graded.out / "logs" / f"{student}.log").is_file(), student
