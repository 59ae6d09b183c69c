"""Wall time to execute each chapter notebook on this machine (goal: about a minute or two on a CPU).

    .venv/bin/python benchmarks/chapter_times.py [chapters/02_attention.ipynb ...]

Writes benchmarks/results/chapter-times-<date>-<hardware>.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from common import environment, result_path

ROOT = Path(__file__).resolve().parents[1]


def time_notebook(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    seconds = {p.name: round(time_notebook(p), 1) for p in paths}
    record = {
        "what": "wall time to execute each chapter notebook, kernel start included (nbclient)",
        "command": "python benchmarks/chapter_times.py " + " ".join(argv),
        **environment(),
        "seconds": seconds,
    }
    out = result_path("chapter-times", "json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(seconds, indent=2), f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
