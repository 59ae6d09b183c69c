"""Peak memory and wall time of tiled (flash) attention vs the course's naive attention on this CPU (chapter 12).

Forward pass only, float32, one thread, B = 1, H = 2, head dim 64, T = 1024 ... 8192 (queries = keys = T):

* ``naive``: ``mt.scaled_dot_product_attention`` (chapter 2's formula: scores, softmax, weights @ V, every
  (B, H, T, T) matrix held in memory), non-causal;
* ``tiled``: ``mt.tiled_attention_forward`` with 128 x 128 tiles (chapter 12), non-causal;
* ``tiled-causal``: the same, causal, which skips the tiles above the diagonal (the causal saving);
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``, PyTorch's fused CPU kernel, as a reference.

Every (method, T) runs in a fresh subprocess, and memory is measured two ways that do not share code:

1. **resident memory** (what the operating system sees): the process creates its inputs, resets the kernel's
   peak-RSS counter (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0), runs the forward pass once and reads
   ``VmHWM - VmRSS`` from ``/proc/self/status``: the extra resident memory at the peak of the call. This includes
   everything (allocator slack, buffers inside kernels, the output) and nothing from before the call;
2. **tensor memory** (what PyTorch allocates): ``mt.TensorMemory``, a dispatch mode that adds up the storage of
   every tensor created during the call while it is alive, and reports the peak.

Wall time is the best of ``--repeats`` calls after the measured one (the machine is shared: other programs only
ever slow a run down, so the fastest is the best estimate). ``os.getloadavg()`` is recorded around each method.

    python benchmarks/flash.py [--lengths 1024,2048,4096,8192] [--repeats 3] [--gpu]

writes benchmarks/results/flash-cpu-<date>-<hardware>.json and .md and asserts that the tiled pass's resident
peak at T = 4096 is at most 1/8 of the naive pass's. ``--gpu`` then runs ``benchmarks/flash_gpu.py`` (the Triton
kernel vs SDPA's flash backend, on a CUDA machine) if that script exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
B, H, D = 1, 2, 64
BLOCK = 128
METHODS = {
    "naive": "mt.scaled_dot_product_attention(q, k, v) (non-causal; the course's chapter-2 formula)",
    "tiled": f"mt.tiled_attention_forward(q, k, v, block_q={BLOCK}, block_k={BLOCK}) (non-causal)",
    "tiled-causal": f"mt.tiled_attention_forward(q, k, v, causal=True, block_q={BLOCK}, block_k={BLOCK})",
    "sdpa": "torch.nn.functional.scaled_dot_product_attention(q, k, v) (PyTorch's fused CPU kernel, non-causal)",
}


def _status_kb() -> dict[str, int]:
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmHWM", "VmRSS")}


def measure_one(method: str, t: int, repeats: int) -> dict:
    """Run in the child process: one (method, T) measurement."""
    import torch
    import torch.nn.functional as F

    import mastering_transformers as mt

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)

    def call(q, k, v):
        if method == "naive":
            return mt.scaled_dot_product_attention(q, k, v)[0]
        if method == "sdpa":
            return F.scaled_dot_product_attention(q, k, v)
        return mt.tiled_attention_forward(q, k, v, causal=method == "tiled-causal", block_q=BLOCK, block_k=BLOCK)[0]

    q, k, v = (torch.randn(B, H, t, D, generator=g) for _ in range(3))
    fn = lambda: call(q, k, v)  # noqa: E731
    with torch.no_grad():
        call(*(torch.randn(B, H, 256, D, generator=g) for _ in range(3)))  # warm-up: load the kernels' code
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak-RSS counter now equals the current RSS
        before = _status_kb()
        t0 = time.perf_counter()
        out = fn()
        first = time.perf_counter() - t0
        after = _status_kb()
        del out
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        with mt.TensorMemory() as mem:
            fn()
    return {
        "method": method, "T": t,
        "rss_peak_extra_bytes": (after["VmHWM"] - before["VmRSS"]) * 1024,
        "tensor_peak_bytes": mem.peak,
        "first_call_s": round(first, 4),
        "best_s": round(min(times), 4) if times else round(first, 4),
        "times_s": [round(x, 4) for x in times],
    }


def run_child(method: str, t: int, repeats: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(t), "--repeats", str(repeats)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(record: dict) -> str:
    env = record["environment"]
    lines = [
        "# Flash attention on the CPU: peak memory and wall time (chapter 12)",
        "",
        f"- date {env['date']}, commit {env['commit']}, torch {env['torch']}, Python {env['python']}",
        f"- hardware: {env['hardware']['cpu']}, {env['hardware']['cpu_count']} cores, no GPU; one thread per run",
        f"- command: `{record['command']}`",
        f"- load average (1 min) at start {env['load_average_1min_at_start']}, at end {record['load_average_at_end']}"
        " (other programs shared the machine; wall times are the best of the repeats)",
        f"- shapes: B = {B}, H = {H}, head dim {D}, float32, forward only, queries = keys = T; tiles {BLOCK} x {BLOCK}",
        "- memory: extra resident memory at the peak of the call (Linux peak-RSS counter reset before it) and peak",
        "  of live tensor storage (`mt.TensorMemory`), each call in a fresh process",
        "",
        "| method | T | resident peak (MiB) | tensor peak (MiB) | best time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in record["runs"]:
        lines.append(f"| {r['method']} | {r['T']} | {r['rss_peak_extra_bytes'] / 2**20:.1f} | "
                     f"{r['tensor_peak_bytes'] / 2**20:.1f} | {r['best_s']:.3f} |")
    c = record["check_T4096"]
    lines += [
        "",
        f"At T = 4096 the tiled pass's resident peak is {c['ratio']:.4f} of the naive pass's, its tensor peak "
        f"{c.get('tensor_ratio', float('nan')):.4f} (required: at most 1/8 of each). The warm-up call (T = 256) "
        "leaves freed pages in the allocator that later calls reuse, so peaks of a few MiB read lower as resident "
        "memory than as tensor memory; the large ones agree. Methods: " + "; ".join(f"`{k}`: {v}" for k, v in METHODS.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="1024,2048,4096,8192")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--gpu", action="store_true", help="also run benchmarks/flash_gpu.py (needs CUDA)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.child[0], int(args.child[1]), args.repeats)))
        return

    sys.path.insert(0, str(HERE))
    from common import environment, result_path

    record = {"environment": environment(), "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}",
                                                                            *sys.argv[1:]]),
              "shapes": {"B": B, "H": H, "D": D, "block": BLOCK, "dtype": "float32", "threads": 1},
              "methods": METHODS, "runs": []}
    lengths = [int(x) for x in args.lengths.split(",")]
    for method in args.methods.split(","):
        for t in lengths:
            load_before = round(os.getloadavg()[0], 2)
            row = run_child(method, t, args.repeats)
            row.update(load_before=load_before, load_after=round(os.getloadavg()[0], 2))
            record["runs"].append(row)
            print(json.dumps(row), flush=True)
    peak = {(r["method"], r["T"]): r["rss_peak_extra_bytes"] for r in record["runs"]}
    if ("naive", 4096) in peak and ("tiled", 4096) in peak:
        ratio = peak[("tiled", 4096)] / peak[("naive", 4096)]
        tensors = {(r["method"], r["T"]): r["tensor_peak_bytes"] for r in record["runs"]}
        ratio_t = tensors[("tiled", 4096)] / tensors[("naive", 4096)]
        record["check_T4096"] = {"ratio": ratio, "tensor_ratio": ratio_t, "ok": ratio <= 1 / 8 and ratio_t <= 1 / 8}
    else:
        record["check_T4096"] = {"ratio": float("nan"), "ok": None}
    record["load_average_at_end"] = round(os.getloadavg()[0], 2)
    path = result_path("flash-cpu", "json")
    path.write_text(json.dumps(record, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(record))
    print(f"wrote {path} and {path.with_suffix('.md')}")
    assert record["check_T4096"]["ok"] is not False, f"tiled/naive peak at T=4096 is {record['check_T4096']}"

    if args.gpu:
        gpu_script = HERE / "flash_gpu.py"
        if not gpu_script.exists():
            raise SystemExit("benchmarks/flash_gpu.py does not exist yet (the GPU part of this benchmark)")
        subprocess.run([sys.executable, str(gpu_script)], check=True)


if __name__ == "__main__":
    main()
