"""Every assignment, graded end to end by the real nbgrader pipeline: the solution scores full marks, the
untouched exercise scores 0 with every check failing, the exercise filled in with the solution code scores full
marks, and each planted realistic bug (tests/planted_bugs/psNN.py) loses exactly the points of the checks it
should fail, no more, no less. One grading run per assignment grades all of its submissions together.

Broken and hostile submissions (invalid JSON, endless loops, stderr, edited test cells, ...) are tested once,
on ps02, in test_grading_ps02.py.
"""

from __future__ import annotations

import pytest

from gradingkit import ASSIGNMENTS, Assignment, Graded, grade

MIN_BUGS = 4  # per assignment (ps02 has more)

_runs: dict[str, Graded] = {}


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """Grade an assignment's solution, untouched and filled-in exercise and planted bugs, once per session."""

    def run(name: str) -> Graded:
        if name not in _runs:
            a = Assignment(name)
            submissions = {"solution": a.solution(), "untouched_exercise": a.exercise(),
                           "filled_exercise": a.filled_exercise(), **{bug: a.with_bug(bug) for bug in a.bugs}}
            _runs[name] = grade(a, submissions, tmp_path_factory.mktemp(name))
        return _runs[name]

    return run


BUG_CASES = [(name, bug) for name in ASSIGNMENTS for bug in sorted(Assignment(name).bugs)]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_assignment_is_complete(name):
    a = Assignment(name)
    assert len(a.functions) >= 4, f"{name}: at least 4 graded functions; found {a.functions}"
    assert len(a.bugs) >= MIN_BUGS, f"{name}: at least {MIN_BUGS} planted bugs; found {len(a.bugs)}"
    for function in a.functions:
        assert a.points(function), f"{name}: {function} has no hidden checks"
    for bug, (function, _, failing) in a.bugs.items():
        assert function in a.functions, f"{bug}: {function} is not a graded function of {name}"
        assert failing and failing <= set(a.points(function)), (
            f"{bug} must fail some checks of {function}: {sorted(failing)} of {sorted(a.points(function))}"
        )


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_scores_full_marks_with_every_check_passing(graded, name):
    g = graded(name)
    a = g.assignment
    assert g.score("solution") == a.max_score() and g.status("solution") == "graded", g.by_student["solution"]
    lines = g.feedback_lines("solution")
    assert len(lines) == sum(len(a.points(f)) for f in a.functions)
    assert all(mark == "✓" for _, mark, _ in lines), [line for line in lines if line[1] != "✓"]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_filled_in_exercise_scores_full_marks(graded, name):
    g = graded(name)
    assert g.score("filled_exercise") == g.assignment.max_score()
    assert g.status("filled_exercise") == "graded"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_untouched_exercise_scores_zero_with_every_check_failing(graded, name):
    g = graded(name)
    a = g.assignment
    assert g.score("untouched_exercise") == 0
    assert g.failed("untouched_exercise") == set().union(*(a.check_names(f) for f in a.functions))
    assert "not implemented yet" in g.feedback_path("untouched_exercise").read_text()


@pytest.mark.parametrize("name, bug", BUG_CASES, ids=[f"{n.split('_')[0]}-{b}" for n, b in BUG_CASES])
def test_planted_bug_loses_exactly_the_points_of_its_checks(graded, name, bug):
    g = graded(name)
    a = g.assignment
    function, _, failing = a.bugs[bug]
    lost = sum(a.points(function)[t] for t in failing)
    assert g.failed(bug) == a.check_names(function, failing), g.feedback_lines(bug)
    assert g.score(bug) == a.max_score() - lost
    assert g.status(bug).startswith("graded"), g.status(bug)
