"""Every assignment, graded end to end by the real nbgrader pipeline: the solution scores full marks, the
untouched exercise scores 0 with every check failing, the exercise filled in with the solution code scores full
marks, and each planted realistic bug (tests/planted_bugs/psNN.py) loses exactly the points of the checks it
should fail, no more, no less. One grading run per assignment grades all of its submissions together; bugs in
different functions share a submission (Assignment.bug_batches), each judged by its own function's checks.

One test class per assignment (TestGradingPs02, ...), so that pytest-xdist's ``--dist loadscope`` sends each
assignment's tests, and its one grading run, to one worker. Broken and hostile submissions (invalid JSON,
endless loops, stderr, edited test cells, ...) are tested once, on ps02, in test_grading_ps02.py.
"""

from __future__ import annotations

import pytest

from gradingkit import ASSIGNMENTS, Assignment, Graded, grade

MIN_BUGS = 4  # per assignment (ps02 has more)

_runs: dict[str, Graded] = {}  # assignment -> its grading run, in this (xdist worker) process


@pytest.fixture
def graded(request, tmp_path_factory) -> Graded:
    """The class's assignment graded once: solution, untouched and filled-in exercise, planted bugs in batches."""
    a: Assignment = request.cls.assignment
    if a.name not in _runs:
        submissions = {"solution": a.solution(), "untouched_exercise": a.exercise(),
                       "filled_exercise": a.filled_exercise(),
                       **{batch: a.with_bugs(members) for batch, members in a.bug_batches().items()}}
        try:
            _runs[a.name] = grade(a, submissions, tmp_path_factory.mktemp(a.name))
        except AssertionError as exc:  # remembered, so that the class's other tests do not grade again
            _runs[a.name] = exc
    if isinstance(_runs[a.name], AssertionError):
        raise _runs[a.name]
    return _runs[a.name]


def _grading_tests(name: str) -> type:
    """The test class of one assignment."""
    a = Assignment(name)
    bugs = sorted(a.bugs)
    batches = a.bug_batches()
    batch_of = {bug: batch for batch, members in batches.items() for bug in members}

    class GradingTests:
        assignment = a

        def test_assignment_is_complete(self):
            assert len(a.functions) >= 4, f"{name}: at least 4 graded functions; found {a.functions}"
            assert len(bugs) >= MIN_BUGS, f"{name}: at least {MIN_BUGS} planted bugs; found {len(bugs)}"
            for function in a.functions:
                assert a.points(function), f"{name}: {function} has no hidden checks"
            for bug, (function, _, failing) in a.bugs.items():
                assert function in a.functions, f"{bug}: {function} is not a graded function of {name}"
                assert failing and failing <= set(a.points(function)), (
                    f"{bug} must fail some checks of {function}: {sorted(failing)} of {sorted(a.points(function))}"
                )

        def test_solution_scores_full_marks_with_every_check_passing(self, graded):
            assert graded.score("solution") == a.max_score(), graded.by_student["solution"]
            assert graded.status("solution") == "graded"
            lines = graded.feedback_lines("solution")
            assert len(lines) == sum(len(a.points(f)) for f in a.functions)
            assert all(mark == "✓" for _, mark, _ in lines), [line for line in lines if line[1] != "✓"]

        def test_filled_in_exercise_scores_full_marks(self, graded):
            assert graded.score("filled_exercise") == a.max_score()
            assert graded.status("filled_exercise") == "graded"

        def test_untouched_exercise_scores_zero_with_every_check_failing(self, graded):
            assert graded.score("untouched_exercise") == 0
            assert graded.failed("untouched_exercise") == set().union(*(a.check_names(f) for f in a.functions))
            assert "not implemented yet" in graded.feedback_path("untouched_exercise").read_text()

        @pytest.mark.parametrize("bug", bugs)
        def test_planted_bug_fails_exactly_its_checks(self, graded, bug):
            function, _, failing = a.bugs[bug]
            student = batch_of[bug]
            failed_here = {(f, check) for f, check in graded.failed(student) if f == function}
            assert failed_here == a.check_names(function, failing), graded.feedback_lines(student)

        @pytest.mark.parametrize("batch", sorted(batches))
        def test_bugs_lose_exactly_the_points_of_their_checks(self, graded, batch):
            lost = sum(a.points(a.bugs[bug][0])[t] for bug in batches[batch] for t in a.bugs[bug][2])
            expected = set().union(*(a.check_names(a.bugs[bug][0], a.bugs[bug][2]) for bug in batches[batch]))
            assert graded.failed(batch) == expected, graded.feedback_lines(batch)
            assert graded.score(batch) == a.max_score() - lost
            assert graded.status(batch).startswith("graded"), graded.status(batch)

    GradingTests.__name__ = GradingTests.__qualname__ = f"TestGrading{a.short.capitalize()}"
    return GradingTests


for _name in ASSIGNMENTS:
    _cls = _grading_tests(_name)
    globals()[_cls.__name__] = _cls
