"""Wall time of autograding, per submission, with the real nbgrader pipeline (goal: <= 10 s per submission).

    .venv/bin/python benchmarks/grading_times.py [psNN_topic ...] [--jobs N]

For each assignment it grades a batch of realistic submissions (the solution, the untouched exercise, the
exercise filled in with the solution code and every planted bug of tests/planted_bugs/) in one run of
``mastering_transformers.grading.grade`` and records the batch's wall time and each student's autograde time.
Writes benchmarks/results/grading-times-<date>-<hardware>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import environment, result_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from gradingkit import ASSIGNMENTS, Assignment, write_submissions  # noqa: E402

from mastering_transformers.grading import grade  # noqa: E402


def time_assignment(name: str, jobs: int | None) -> dict:
    a = Assignment(name)
    submissions = {"solution": a.solution(), "untouched_exercise": a.exercise(),
                   "filled_exercise": a.filled_exercise(), **{bug: a.with_bugs([bug]) for bug in a.bugs}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        write_submissions(folder, a, submissions)
        started = time.perf_counter()
        graded = grade(folder, Path(tmp) / "out", name, course_root=ROOT, jobs=jobs, log=lambda _: None)
        wall = time.perf_counter() - started
    per_student = [s.seconds for s in graded]
    return {
        "submissions": len(graded),
        "batch_wall_seconds": round(wall, 1),
        "wall_seconds_per_submission": round(wall / len(graded), 2),
        "autograde_seconds_median": round(statistics.median(per_student), 2),
        "autograde_seconds_max": round(max(per_student), 2),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("assignments", nargs="*", default=ASSIGNMENTS)
    parser.add_argument("--jobs", type=int, default=None, help="parallel workers (default: the grader's)")
    args = parser.parse_args(argv)
    results = {name: time_assignment(name, args.jobs) for name in args.assignments}
    record = {
        "what": "nbgrader autograde via mastering_transformers.grading.grade: batch wall time (generate_assignment, "
                "autograde, generate_feedback, export) and per-student autograde time (one nbgrader process each)",
        "command": "python benchmarks/grading_times.py " + " ".join(argv),
        "jobs": args.jobs or "default (CPUs, at most 4)",
        **environment(),
        "assignments": results,
    }
    out = result_path("grading-times", "json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(results, indent=2), f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
