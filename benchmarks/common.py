"""Where and on what a benchmark ran: every recorded result carries this."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        return match.group(1).strip() if match else platform.processor()
    except OSError:
        return platform.processor() or "unknown CPU"


def hardware() -> dict:
    info = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def hardware_slug() -> str:
    return "gpu-" + re.sub(r"\W+", "-", hardware()["gpu"]).strip("-").lower() if torch.cuda.is_available() \
        else f"cpu{os.cpu_count()}"


def environment() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": commit or None,
        "hardware": hardware(),
        # other work on the machine inflates wall times: record how busy it was when the run started
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
    }


def result_path(name: str, ext: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}-{datetime.date.today().isoformat()}-{hardware_slug()}.{ext}"
