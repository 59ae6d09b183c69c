"""The ``grade`` command: a folder of submissions in, grades.csv, feedback and nbgrader's export out.

``python -m mastering_transformers.grading grade --submissions DIR --out OUT --assignment psNN_topic``

1. intake: one row per entry of DIR, a safe student id each, notebooks rebuilt from the release;
2. a throwaway nbgrader course: ``nbgrader generate_assignment`` (the gradebook), collect (the rebuilt
   notebooks copied to ``submitted/``);
3. ``nbgrader autograde`` in ``jobs`` shards, each a copy of the course with its own gradebook and its own
   sandbox uid; ``TrustedChecks`` runs the self-test once per shard, then every student of the shard;
4. ``nbgrader generate_feedback`` and ``nbgrader export`` in each shard; the scores are read back from the
   gradebooks and checked against the trusted checker's reports;
5. ``OUT/grades.csv`` (every entry, its status and points per function), ``OUT/feedback/<student>/``,
   ``OUT/logs/`` and ``OUT/nbgrader_export.csv``.

A course error (a hidden check missing or failing on the solution, no sandbox) grades nobody: every row
says so and the command exits with status 3.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .checker import DEFAULT_CHECK_TIMEOUT, DEFAULT_LOAD_TIMEOUT, CourseError, fmt
from .intake import Submission, discover, prepare
from .sandbox import SandboxConfig, bwrap_path

UNSAFE_NOTE = "WITHOUT SANDBOX (--unsafe-no-sandbox): student code ran unconfined"


def find_course_root(start: Path | None = None) -> Path:
    """The first folder above ``start`` (default: cwd) with nbgrader_config.py and solutions/, else the
    repository this package was installed from."""
    start = (Path.cwd() if start is None else Path(start)).resolve()
    for folder in (start, *start.parents, Path(__file__).resolve().parents[3]):
        if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(f"no course root (nbgrader_config.py and solutions/) above {start}; pass --course")


class Course:
    """A throwaway nbgrader course directory with one assignment, driven by nbgrader's command line."""

    def __init__(self, root: Path, assignment: str, env: dict[str, str]):
        self.root, self.assignment, self.env = root, assignment, env

    @classmethod
    def create(cls, root: Path, source_course: Path, assignment: str, env: dict[str, str]) -> Course:
        root.mkdir(parents=True)
        shutil.copy(source_course / "nbgrader_config.py", root / "nbgrader_config.py")
        shutil.copytree(source_course / "solutions" / assignment, root / "solutions" / assignment)
        bin_dir = str(Path(sys.executable).parent)  # nbgrader runs alembic from PATH
        env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "MPLBACKEND": "Agg",
               **env}
        return cls(root, assignment, env)

    def clone(self, root: Path, **env: str) -> Course:
        shutil.copytree(self.root, root)
        return Course(root, self.assignment, {**self.env, **env})

    def nbgrader(self, *args: str, timeout: float = 600) -> tuple[int, str]:
        """Run ``nbgrader ARGS`` in the course; its exit status and its log."""
        proc = subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=self.root, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
            return -9, f"{log}\n[killed after {timeout:g} s]"
        return proc.returncode, log

    def path(self, kind: str, student: str | None = None) -> Path:
        parts = [kind, *([student] if student else []), self.assignment, f"{self.assignment}.ipynb"]
        return self.root.joinpath(*parts)

    def generate_assignment(self):
        import nbformat

        rc, log = self.nbgrader("generate_assignment", self.assignment, "--force")
        if rc != 0 or not self.path("exercises").is_file():
            raise CourseError(f"nbgrader generate_assignment failed:\n{log[-3000:]}")
        return nbformat.read(self.path("exercises"), as_version=4)

    def collect(self, sub: Submission) -> None:
        """nbgrader's collect step: the rebuilt notebook goes to ``submitted/<student>/<assignment>/``."""
        import nbformat

        target = self.path("submitted", sub.student)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(sub.notebook, target)

    def gradebook_scores(self, order: list[str]) -> dict[str, tuple[float, str]]:
        """Per student: the total and ``function earned/max`` per test cell, from the gradebook."""
        from nbgrader.api import Gradebook, MissingEntry

        scores = {}
        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gb:
            for student in gb.students:
                try:
                    submission = gb.find_submission(self.assignment, student.id)
                except MissingEntry:
                    continue
                grades = {g.cell.name: g for nb in submission.notebooks for g in nb.grades}
                details = "; ".join(
                    f"{name.removeprefix('test_')} {fmt(grades[name].score)}/{fmt(grades[name].max_score)}"
                    for name in order if name in grades)
                scores[student.id] = (float(submission.score), details)
        return scores

    def max_score(self) -> float:
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gb:
            return float(gb.find_assignment(self.assignment).max_score)

    def export(self) -> list[dict[str, str]]:
        target = self.root / "export.csv"
        rc, log = self.nbgrader("export", "--to", str(target))
        if rc != 0 or not target.is_file():
            raise RuntimeError(f"nbgrader export failed:\n{log[-3000:]}")
        with target.open(newline="") as f:
            return list(csv.DictReader(f))


def grade_shard(course: Course, share: list[Submission], log) -> tuple[str, list[dict] | None]:
    """Collect, autograde (one nbgrader process for the shard), feedback and export; nbgrader's log."""
    for sub in share:
        course.collect(sub)
    started = time.perf_counter()
    rc, text = course.nbgrader("autograde", course.assignment, "--force", timeout=600 + 240 * len(share))
    log(f"shard {course.root.name}: {len(share)} submissions autograded in {time.perf_counter() - started:.1f} s"
        + ("" if rc == 0 else f" (nbgrader exit status {rc})"))
    rc_fb, text_fb = course.nbgrader("generate_feedback", course.assignment, "--force")
    text += "\n--- generate_feedback ---\n" + text_fb
    try:
        rows = course.export()
    except RuntimeError as exc:
        text += f"\n{exc}"
        rows = None
    return text, rows


def grade(submissions_dir: Path, out: Path, assignment: str, course_root: Path | None = None,
          check_timeout: float | None = None, load_timeout: float | None = None, jobs: int | None = None,
          unsafe_no_sandbox: bool = False, log=print) -> list[Submission]:
    """Grade every entry of ``submissions_dir``; write grades.csv, feedback/, logs/ and
    nbgrader_export.csv to ``out``. Raises ``CourseError`` (after writing grades.csv) when the course's
    side is broken."""
    course_root = find_course_root() if course_root is None else Path(course_root).resolve()
    if not (course_root / "solutions" / assignment).is_dir():
        raise FileNotFoundError(f"no solutions/{assignment} in {course_root}")
    if not unsafe_no_sandbox and bwrap_path() is None:
        raise CourseError("bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` (make grade does), "
                          "or pass --unsafe-no-sandbox on a machine you do not mind students owning")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    submissions = discover(Path(submissions_dir), assignment)
    env = {"MT_HIDDEN_TESTS": str(course_root / "tests" / "hidden"),
           "MT_CHECK_TIMEOUT": str(check_timeout or DEFAULT_CHECK_TIMEOUT),
           "MT_LOAD_TIMEOUT": str(load_timeout or DEFAULT_LOAD_TIMEOUT),
           "MT_UNSAFE_NO_SANDBOX": "1" if unsafe_no_sandbox else "0"}
    with tempfile.TemporaryDirectory(prefix="mt-grade-") as tmp:
        base = Course.create(Path(tmp) / "course", course_root, assignment, env)
        released = base.generate_assignment()
        max_score = base.max_score()
        for sub in submissions:
            if sub.path is not None and not sub.problem:
                prepare(sub, released)
        gradeable = [s for s in submissions if not s.problem]
        jobs = max(1, min(jobs or min(2, os.cpu_count() or 1), len(gradeable) or 1))
        shards = [gradeable[i::jobs] for i in range(jobs)]
        courses = [base.clone(Path(tmp) / f"shard{i}", MT_SANDBOX_UID=str(SandboxConfig().uid + i),
                              MT_RESULTS_DIR=str(Path(tmp) / f"shard{i}-reports")) for i in range(jobs)]
        with ThreadPoolExecutor(jobs) as pool:
            outcomes = list(pool.map(lambda cs: grade_shard(cs[0], cs[1], log), zip(courses, shards)))
        order = [c.metadata["nbgrader"]["grade_id"] for c in released.cells
                 if c.metadata.get("nbgrader", {}).get("grade")]
        course_error = ""
        rows = []
        for course, share, (text, exported) in zip(courses, shards, outcomes):
            reports_dir = Path(course.env["MT_RESULTS_DIR"])
            (out / "logs").mkdir(exist_ok=True)
            (out / "logs" / f"nbgrader-{course.root.name}.log").write_text(text)
            reports = {p.stem: json.loads(p.read_text()) for p in reports_dir.glob("*.json")} \
                if reports_dir.is_dir() else {}
            errors = [r["course_error"] for r in reports.values() if "course_error" in r]
            if errors:
                course_error = errors[0]
                continue
            rows += exported or []
            record(course, share, reports, exported, order, out, unsafe_no_sandbox)
        if course_error:
            for sub in submissions:
                sub.problem, sub.notes, sub.score = f"not graded: course error: {course_error}", [], 0.0
            write_grades(out / "grades.csv", submissions, max_score, course_error=True)
            raise CourseError(course_error)
        write_export(out / "nbgrader_export.csv", rows)
        write_grades(out / "grades.csv", submissions, max_score)
    return submissions


def record(course: Course, share: list[Submission], reports: dict, exported: list[dict] | None, order: list[str],
           out: Path, unsafe: bool) -> None:
    """Scores from the gradebook (checked against the trusted reports), feedback and logs of one shard."""
    in_gradebook = course.gradebook_scores(order)
    exported_scores = {row["student_id"]: float(row["score"]) for row in exported or []}
    for sub in share:
        report = reports.get(sub.student)
        (out / "logs" / f"{sub.student}.log").write_text(
            json.dumps(report, indent=1) if report else f"no report: see logs/nbgrader-{course.root.name}.log")
        if report is None or sub.student not in in_gradebook:
            sub.problem = f"autograde failed: see logs/nbgrader-{course.root.name}.log"
            continue
        sub.score, sub.details = in_gradebook[sub.student]
        sub.seconds = float(report.get("seconds", 0.0))
        trusted = sum(f["earned"] for f in report["functions"])
        if abs(trusted - sub.score) > 1e-9:  # never expected: the gradebook is written from the report
            sub.problem = f"score mismatch: gradebook {fmt(sub.score)}, checker {fmt(trusted)}; see logs/"
            continue
        if sub.student in exported_scores and abs(exported_scores[sub.student] - sub.score) > 1e-9:
            sub.notes.append("nbgrader export disagrees with the gradebook")
        notes = [f"{f['name']}: {n}" for f in report["functions"] for n in f.get("notes", [])]
        sub.notes.extend(notes)
        if unsafe:
            sub.notes.insert(0, UNSAFE_NOTE)
        feedback = course.root / "feedback" / sub.student / course.assignment
        if feedback.is_dir():
            shutil.copytree(feedback, out / "feedback" / sub.student, dirs_exist_ok=True)
        else:
            sub.notes.append("no feedback generated: see logs/")


def write_export(path: Path, rows: list[dict[str, str]]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["student_id"]))


def status_of(sub: Submission) -> str:
    return "; ".join([sub.problem or "graded", *sub.notes])


def write_grades(path: Path, submissions: list[Submission], max_score: float, course_error: bool = False) -> None:
    """``grades.csv``: one row per entry of the submissions folder, whatever happened to it."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "submitted_as", "score", "max_score", "status", "details", "seconds"])
        for s in sorted(submissions, key=lambda s: s.student.lower()):
            score = "" if course_error else fmt(s.score)
            writer.writerow([s.student, s.submitted_as, score, fmt(max_score), status_of(s), s.details,
                             f"{s.seconds:.1f}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mastering_transformers.grading",
                                     description="Autograde the course's nbgrader exercises, safely.")
    commands = parser.add_subparsers(dest="command", required=True)
    g = commands.add_parser("grade", help="autograde a folder of submissions with nbgrader")
    g.add_argument("--submissions", required=True, type=Path,
                   help="folder with <student>/<assignment>.ipynb or <student>.ipynb")
    g.add_argument("--out", required=True, type=Path, help="where grades.csv, feedback/ and logs/ go")
    g.add_argument("--assignment", required=True, help="the assignment to grade, e.g. ps02_attention")
    g.add_argument("--course", type=Path, default=None, help="course root (default: found from the cwd)")
    g.add_argument("--check-timeout", type=float, default=None,
                   help=f"seconds per hidden check (default {DEFAULT_CHECK_TIMEOUT:g})")
    g.add_argument("--load-timeout", type=float, default=None,
                   help=f"seconds per top-level statement of a student's cell (default {DEFAULT_LOAD_TIMEOUT:g})")
    g.add_argument("--jobs", type=int, default=None, help="parallel shards (default: CPUs, at most 2)")
    g.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run student code without bubblewrap (recorded in grades.csv; never for real students)")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"--submissions {args.submissions} is not a folder")
    started = time.perf_counter()
    try:
        subs = grade(args.submissions, args.out, args.assignment, args.course, args.check_timeout,
                     args.load_timeout, args.jobs, args.unsafe_no_sandbox)
    except CourseError as exc:
        print(f"course error, nobody graded: {exc}", file=sys.stderr)
        return 3
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    graded = sum(not s.problem for s in subs)
    print(f"{graded} of {len(subs)} entries graded in {time.perf_counter() - started:.0f} s; "
          f"grades in {args.out / 'grades.csv'}")
    return 0
