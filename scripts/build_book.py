"""Build the book with every chapter executed exactly once, several at a time.

    .venv/bin/python scripts/build_book.py [--jobs N]

1. Each chapter of ``_toc.yml`` is executed by nbclient in its own kernel, ``--jobs`` at a time (default: one
   per CPU), with the chapters folder as its working directory, as Jupyter Book would run it. A cell that raises
   (a failed ``assert`` included) fails the build, after the other chapters have finished.
2. The executed notebooks and the book's other sources are staged in ``_build/book_src/`` with execution
   turned off, and Jupyter Book builds the HTML from there into ``_build/html`` (``--warningiserror``).

Jupyter Book alone executes the chapters one after another; on a 2-core machine this halves the wall time.
Per-chapter execution times are written to ``_build/chapter_times.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
STAGE = BUILD / "book_src"
SOURCES = ["intro.md", "_toc.yml", "_ext", "_vendor"]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]


def execute(name: str, timeout: int) -> tuple[str, float, str]:
    """Execute ``chapters/NN_x.ipynb`` into the stage; (name, seconds, error or "")."""
    source = ROOT / f"{name}.ipynb"
    nb = nbformat.read(source, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}})
    error = ""
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc)[-3000:]
    except Exception as exc:  # a dead kernel, a timeout
        error = f"{type(exc).__name__}: {exc}"[-3000:]
    seconds = time.perf_counter() - started
    target = STAGE / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return name, seconds, error


def stage_sources() -> None:
    for item in SOURCES:
        src, dst = ROOT / item, STAGE / item
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy(src, dst)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"  # executed above, once
    (STAGE / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    chapters = toc_files()
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda name: execute(name, args.timeout), chapters))
    for name, seconds, error in results:
        print(f"{name}: {seconds:.1f} s{' FAILED' if error else ''}")
    (BUILD / "chapter_times.json").write_text(json.dumps(
        {name: round(seconds, 1) for name, seconds, _ in results}, indent=1) + "\n")
    failed = [(name, error) for name, _, error in results if error]
    for name, error in failed:
        print(f"\n{name} raised:\n{error}", file=sys.stderr)
    if failed:
        return 1
    print(f"executed {len(chapters)} chapters in {time.perf_counter() - started:.0f} s with {args.jobs} kernels")
    stage_sources()
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(STAGE), "--path-output", str(ROOT),
                            "--warningiserror", "--keep-going"], cwd=ROOT)
    return build.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
