"""Wall time of autograding a batch of 30 submissions with the real, sandboxed pipeline (goal: <= 10 s each).

    .venv/bin/python benchmarks/grading_times.py [psNN_topic ...] [--batch 30] [--jobs N]

For each assignment it grades one batch of realistic submissions (the solution, the untouched exercise,
the exercise filled in with the solution code, every planted bug of tests/planted_bugs/, padded to the
batch size with filled-in copies under other ids) in one run of the grading CLI's ``grade``: intake,
nbgrader generate_assignment, autograde (sandboxed worker per student, self-test once per shard),
generate_feedback and export. Records the batch's wall time, the wall time per submission and each
student's time inside the trusted checker. Writes benchmarks/results/grading-times-<date>-<hardware>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import environment, result_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from gradingkit import Assignment, write_submissions  # noqa: E402

from mastering_transformers.grading.pipeline import grade  # noqa: E402


def batch(a: Assignment, size: int) -> dict:
    subs = {"solution": a.solution(), "untouched_exercise": a.exercise(), "filled_exercise": a.filled_exercise(),
            **{bug: a.with_bugs([bug]) for bug in sorted(a.bugs)}}
    for i in range(size - len(subs)):
        subs[f"student_{i:02d}"] = a.filled_exercise()
    return dict(list(subs.items())[:size])


def time_assignment(name: str, size: int, jobs: int | None) -> dict:
    a = Assignment(name)
    submissions = batch(a, size)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        write_submissions(folder, a, submissions)
        started = time.perf_counter()
        graded = grade(folder, Path(tmp) / "out", name, course_root=ROOT, jobs=jobs, log=lambda _: None)
        wall = time.perf_counter() - started
    per_student = [s.seconds for s in graded if not s.problem]
    return {
        "submissions": len(graded),
        "graded": len(per_student),
        "batch_wall_seconds": round(wall, 1),
        "wall_seconds_per_submission": round(wall / len(graded), 2),
        "trusted_checker_seconds_median": round(statistics.median(per_student), 2),
        "trusted_checker_seconds_max": round(max(per_student), 2),
        "load_average_before": [round(x, 2) for x in load_before],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("assignments", nargs="*", default=["ps02_attention", "ps05_normalisation"])
    parser.add_argument("--batch", type=int, default=30, help="submissions per batch")
    parser.add_argument("--jobs", type=int, default=None, help="parallel shards (default: the grader's)")
    args = parser.parse_args(argv)
    results = {name: time_assignment(name, args.batch, args.jobs) for name in args.assignments}
    record = {
        "what": "python -m mastering_transformers.grading grade on a batch: intake, nbgrader generate_assignment, "
                "autograde (TrustedChecks: one sandboxed worker per student, self-test once per shard), "
                "generate_feedback, export. Wall time per submission = batch wall time / batch size.",
        "command": "python benchmarks/grading_times.py " + " ".join(argv),
        "jobs": args.jobs or "default (CPUs, at most 2)",
        **environment(),
        "assignments": results,
    }
    out = result_path("grading-times", "json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(results, indent=2), f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
