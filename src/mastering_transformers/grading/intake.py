"""Intake: every file of a submissions folder gets a row, a student id and, if it is a notebook, a rebuild.

A submission is rebuilt from the *released* notebook: each answer cell gets the student's source of the
cells with the same ``grade_id``, wherever they are and whatever their type (a cell moved, split, copied
or turned into markdown still counts; several cells with one ``grade_id`` are joined in notebook order, as
running them would). Everything else (locked cells, visible tests, set-up, the student's extra cells and
outputs, metadata) comes from the release. So nbgrader always sees a well-formed notebook, and nothing of
the student's but their answers reaches the grader.

Student ids are made safe for nbgrader and file names (ASCII letters, digits, ``_.-``); the original name
is kept beside it in ``grades.csv``.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

MAX_NOTEBOOK_BYTES = 20 * 2**20


@dataclass
class Submission:
    """One entry of the submissions folder and what happened to it."""

    student: str  # the safe id used with nbgrader
    submitted_as: str  # the entry's name in the submissions folder
    path: Path | None  # the notebook graded (None if none)
    problem: str = ""  # why it could not be graded; empty when it was
    notes: list[str] = field(default_factory=list)
    notebook: object = None  # the rebuilt notebook
    score: float = 0.0
    details: str = ""
    seconds: float = 0.0
    log: str = ""


def safe_id(name: str) -> str:
    """``José Müller`` -> ``Jose_Muller``; ``.hidden`` -> ``hidden``; never empty."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_name).strip("._-")
    return cleaned or "student"


def _unique(base: str, taken: set[str]) -> str:
    candidate, n = base, 2
    while candidate.lower() in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate.lower())
    return candidate


def discover(folder: Path, assignment: str) -> list[Submission]:
    """One ``Submission`` per entry of ``folder`` (dotfiles and stray files included), in name order.

    ``<name>/`` holds ``<assignment>.ipynb`` (extra notebooks are noted) or exactly one notebook;
    ``<name>.ipynb`` is a notebook; anything else is a row that says why it was not graded. When both
    ``<name>/`` and ``<name>.ipynb`` exist, the folder is graded and the file noted.
    """
    entries = sorted(folder.iterdir(), key=lambda p: (p.name.lower(), p.name))
    folders = {p.name for p in entries if p.is_dir()}
    taken: set[str] = set()
    found = []
    for entry in entries:
        stem = entry.name[: -len(".ipynb")] if entry.name.endswith(".ipynb") else entry.name
        sub = Submission(_unique(safe_id(stem), taken), entry.name, None)
        if entry.is_symlink():
            sub.problem = "a symbolic link, not a submission: not followed"
        elif entry.is_dir():
            sub.path, problem, notes = _notebook_in(entry, assignment)
            sub.problem, sub.notes = problem, notes
        elif entry.suffix == ".ipynb":
            if stem in folders:
                sub.problem = f"not graded: the folder {stem}/ of the same student was graded instead"
            else:
                sub.path = entry
        else:
            sub.problem = "not a notebook (.ipynb): not graded"
        if sub.student != stem:
            sub.notes.append(f"graded as student id {sub.student}")
        found.append(sub)
    return found


def _notebook_in(folder: Path, assignment: str) -> tuple[Path | None, str, list[str]]:
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not p.is_symlink()
                       and ".ipynb_checkpoints" not in p.parts)
    expected = folder / f"{assignment}.ipynb"
    if expected in notebooks:
        others = [str(p.relative_to(folder)) for p in notebooks if p != expected]
        return expected, "", [f"ignored other notebooks: {', '.join(others)}"] if others else []
    if len(notebooks) == 1:
        return notebooks[0], "", [f"graded {notebooks[0].relative_to(folder)} as {assignment}.ipynb"]
    if not notebooks:
        return None, f"missing notebook: no {assignment}.ipynb in {folder.name}/", []
    names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
    return None, f"{len(notebooks)} notebooks and none named {assignment}.ipynb ({names}): rename the one to grade", []


def read_notebook(path: Path):
    """(the notebook at ``path`` as nbformat v4, its original version): older versions are upgraded and a
    BOM ignored; ``ValueError`` says why it is not a notebook."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"invalid notebook: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    try:
        text = path.read_bytes().decode("utf-8-sig")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid notebook: not valid JSON ({_shorten(str(exc), 120)})") from None
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data or "nbformat" not in data:
        raise ValueError("invalid notebook: valid JSON, but not a Jupyter notebook (no 'cells' or 'nbformat')")
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        reason = _schema_error(data) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"invalid notebook: {_shorten(reason, 160)}") from None
    return nb, data["nbformat"]


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _schema_error(data: dict) -> str:
    from nbformat.validator import get_validator

    try:
        validator = get_validator(version=data["nbformat"], version_minor=data.get("nbformat_minor"))
        if validator is None:
            return f"unsupported nbformat version {data['nbformat']!r}"
        errors = [error.message for error in validator.iter_errors(data)]
    except Exception:
        return ""
    return errors[0] if errors else ""


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str) else None


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def rebuild(submitted, released) -> tuple[object, list[str]]:
    """The released notebook with the student's answers in its answer cells, and notes on what was changed."""
    nb = copy.deepcopy(released)
    notes = []
    by_id: dict[str, list] = {}
    for cell in submitted.cells:
        grade_id = _grade_id(cell)
        if grade_id:
            by_id.setdefault(grade_id, []).append(cell)
    positions = {_grade_id(c): i for i, c in enumerate(submitted.cells) if _grade_id(c)}
    released_ids = [_grade_id(c) for c in released.cells if _grade_id(c)]
    order = [g for g in released_ids if g in positions]
    if order != sorted(order, key=positions.get):
        notes.append("cells were moved: each answer was put back in its place")
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if meta.get("solution") and not meta.get("grade"):
            answers = by_id.get(grade_id, [])
            if not answers:
                notes.append(f"answer cell {grade_id} is missing: graded as unanswered")
                continue
            if len(answers) > 1:
                notes.append(f"answer cell {grade_id} appears {len(answers)} times (split or copied): "
                             "graded as one cell, in order")
            if any(a.get("cell_type") != "code" for a in answers):
                notes.append(f"answer cell {grade_id} was not a code cell: graded as code")
            cell.source = "\n\n".join(_source(a) for a in answers)
        elif meta.get("locked") or meta.get("grade"):
            original = by_id.get(grade_id, [])
            if not original:
                notes.append(f"locked cell {grade_id} was deleted: the original was graded")
            elif any(_source(c) != cell.source for c in original):
                notes.append(f"locked cell {grade_id} was edited: the original was graded")
    extra = sum(1 for c in submitted.cells if not _grade_id(c) and c.get("cell_type") == "code"
                and _source(c).strip() and _source(c) not in {r.source for r in released.cells})
    if extra:
        notes.append(f"{extra} code cell(s) you added were not graded: only answer cells are")
    return nb, notes


def prepare(sub: Submission, released) -> None:
    """Read and rebuild the submission's notebook; a problem or notes are recorded on ``sub``."""
    try:
        submitted, version = read_notebook(sub.path)
    except (ValueError, OSError) as exc:
        sub.problem = str(exc)
        return
    if version != 4:
        sub.notes.append(f"nbformat v{version} notebook upgraded to v4")
    sub.notebook, notes = rebuild(submitted, released)
    sub.notes.extend(notes)
