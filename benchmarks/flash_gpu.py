"""Flash attention on an NVIDIA GPU: the course's Triton kernel against PyTorch's flash kernel and naive attention.

    python benchmarks/flash_gpu.py [--t 512,1024,2048,4096,8192,16384] [--head-dims 64,128] [--batch 16 --heads 16]

What it measures (chapter 12, issue 11), all causal, bfloat16, B x H = 16 x 16:

1. correctness first: the Triton kernel (``mt.flash_triton.flash_attention``) and SDPA's flash backend against a
   float32 reference (SDPA's math backend on float32 copies), output and the three gradients, at T = 1024 for
   every head size, and for the first head size also at a ragged T = 1000 (masked loads); ``--check-noncausal``
   adds a non-causal case (off by default: each new kernel variant costs a round of compiling and autotuning).
   The run stops if the kernel's relative error exceeds max(2 x SDPA-flash's error, 1e-2).
2. speed: median time of the forward pass and of forward + backward (``torch.autograd.grad`` of the output with a
   fixed upstream gradient) with ``triton.testing.do_bench`` (warm-up runs first, the L2 cache flushed before each
   run), for
   * ``triton``: the course kernel (autotuned on first use of each length; the tuning runs in the warm-up call);
   * ``sdpa_flash``: ``F.scaled_dot_product_attention`` under ``sdpa_kernel(SDPBackend.FLASH_ATTENTION)``;
   * ``naive``: the course formula ``mt.scaled_dot_product_attention`` (the (T, T) scores, softmax, P V), only
     while its score matrices fit in memory;
   and the peak memory of one forward + backward.
3. achieved TFLOP/s with the FlashAttention papers' convention: forward = 4 B H T^2 D FLOPs (two (T, T, D)
   matmuls, 2 FLOPs per multiply-add), halved when causal (only the lower triangle is useful work), backward =
   2.5 x forward (five matmuls; the recomputation of Q K^T is not counted), forward + backward = 3.5 x forward.
   Naive attention computes the masked upper triangle too; it is credited with the same useful FLOPs.

Writes benchmarks/results/flash-gpu-<date>-<gpu>.json and .md with the GPU's name, date, torch, triton and CUDA
versions, the chosen kernel configurations and the command. Written to finish in under 3 minutes on an H100/H200
(most of it compiling and autotuning the Triton kernels). It refuses to run without CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path  # noqa: E402

import mastering_transformers as mt  # noqa: E402

IMPLS = ("triton", "sdpa_flash", "naive")
NAIVE_BYTES_PER_SCORE = 12  # fwd+bwd of the course formula keeps several (B, H, T, T) tensors: scores, mask, P, dP
GOAL_T, GOAL_RATIO = 4096, 0.8  # issue 11: at T = 4096 the kernel should reach >= 0.8 x SDPA flash's speed


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--t", default="512,1024,2048,4096,8192,16384", help="comma-separated sequence lengths")
    p.add_argument("--head-dims", default="64,128", help="comma-separated head sizes")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--warmup-ms", type=float, default=10.0, help="do_bench warm-up time per measurement")
    p.add_argument("--rep-ms", type=float, default=40.0, help="do_bench measuring time per measurement")
    p.add_argument("--check-noncausal", action="store_true", help="also check a non-causal case (more compiling)")
    args = p.parse_args(argv)
    args.t = [int(x) for x in args.t.split(",")]
    args.head_dims = [int(x) for x in args.head_dims.split(",")]
    if min(args.t) < 1 or min(args.head_dims) < 1 or args.batch < 1 or args.heads < 1:
        p.error("lengths, head sizes, batch and heads must be positive")
    return args


def attention_flops(b: int, h: int, t: int, d: int, causal: bool, backward: bool) -> float:
    """Useful FLOPs: forward 4 B H T^2 D (halved if causal); forward + backward 3.5 x that."""
    forward = 4.0 * b * h * t * t * d * (0.5 if causal else 1.0)
    return forward * (3.5 if backward else 1.0)


def attention_fns():
    """name -> fn(q, k, v) -> (B, H, T, D), causal; SDPA's flash backend is selected inside the call."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from mastering_transformers.flash_triton import flash_attention

    def sdpa_flash(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return {
        "triton": lambda q, k, v: flash_attention(q, k, v, causal=True),
        "sdpa_flash": sdpa_flash,
        "naive": lambda q, k, v: mt.scaled_dot_product_attention(q, k, v, is_causal=True)[0],
    }


def make_inputs(b, h, t, d, dtype=torch.bfloat16, seed=0, device="cuda"):
    g = torch.Generator(device=device).manual_seed(seed)
    q, k, v, dout = (torch.randn(b, h, t, d, device=device, dtype=dtype, generator=g) for _ in range(4))
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), dout


def value_and_grads(fn, q, k, v, dout):
    out = fn(q, k, v)
    return (out, *torch.autograd.grad(out, (q, k, v), dout))


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.float() - ref).norm() / ref.norm()).item()


def check_correctness(head_dims, t=1024, ragged_t=1000, batch=2, heads=4, noncausal=False) -> list[dict]:
    """Relative errors of the Triton kernel and of SDPA flash against float32 math-backend SDPA."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from mastering_transformers.flash_triton import flash_attention

    cases = [(d, t, True) for d in head_dims] + [(head_dims[0], ragged_t, True)]
    if noncausal:
        cases.append((head_dims[0], ragged_t, False))
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU only to try this code under the interpreter
    rows = []
    for d, length, causal in cases:
        q, k, v, dout = make_inputs(batch, heads, length, d, seed=1, device=device)
        x32 = [x.detach().float().requires_grad_() for x in (q, k, v)]
        with sdpa_kernel(SDPBackend.MATH):
            ref = value_and_grads(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
                                  *x32, dout.float())
        ours = value_and_grads(lambda a, b, c: flash_attention(a, b, c, causal=causal), q, k, v, dout)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            theirs = value_and_grads(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
                                     q, k, v, dout)
        for name, a, b, r in zip(("out", "dq", "dk", "dv"), ours, theirs, ref):
            err, err_sdpa = relative_error(a, r), relative_error(b, r)
            rows.append({"head_dim": d, "t": length, "causal": causal, "tensor": name, "triton_rel_err": err,
                         "sdpa_flash_rel_err": err_sdpa, "ok": err <= max(2 * err_sdpa, 1e-2)})
    return rows


def fits_naive(b, h, t, free_bytes: int) -> bool:
    return b * h * t * t * NAIVE_BYTES_PER_SCORE < 0.8 * free_bytes


def tuned_configs() -> dict:
    """The configurations the autotuner picked last (block sizes, warps, stages), per kernel."""
    from mastering_transformers import flash_triton as ft

    picked = {}
    for name in ("_launch_fwd", "_launch_dkdv", "_launch_dq"):
        best = getattr(getattr(ft, name), "best_config", None)
        picked[name.removeprefix("_launch_")] = str(best) if best is not None else None
    return picked


def measure(name, fn, b, h, t, d, args) -> dict:
    """Forward and forward + backward medians (ms), TFLOP/s and peak memory of one fwd+bwd, for one size."""
    from triton.testing import do_bench

    q, k, v, dout = make_inputs(b, h, t, d)
    row = {"impl": name, "t": t, "head_dim": d}
    try:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        value_and_grads(fn, q, k, v, dout)  # first call: compiles and autotunes the Triton kernels for this size
        torch.cuda.synchronize()
        row["peak_mib_fwd_bwd"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
        if name == "triton":
            row["configs"] = tuned_configs()
        with torch.no_grad():
            fwd_ms = do_bench(lambda: fn(q, k, v), warmup=args.warmup_ms, rep=args.rep_ms, return_mode="median")
        both_ms = do_bench(lambda: value_and_grads(fn, q, k, v, dout), warmup=args.warmup_ms, rep=args.rep_ms,
                           return_mode="median")
    except torch.cuda.OutOfMemoryError:
        row["skipped"] = "out of memory"
        return row
    except Exception as e:  # a kernel that fails to compile or launch: record it, measure the others
        row["skipped"] = f"error: {type(e).__name__}: {str(e)[:300]}"
        return row
    finally:
        del q, k, v, dout
        torch.cuda.empty_cache()
    row["fwd_ms"], row["fwd_bwd_ms"] = round(fwd_ms, 4), round(both_ms, 4)
    row["fwd_tflops"] = round(attention_flops(b, h, t, d, True, False) / (fwd_ms * 1e-3) / 1e12, 1)
    row["fwd_bwd_tflops"] = round(attention_flops(b, h, t, d, True, True) / (both_ms * 1e-3) / 1e12, 1)
    return row


def speed_ratios(rows: list[dict]) -> list[dict]:
    """SDPA-flash time / Triton time (> 1: the Triton kernel is faster), per head size and length."""
    by_key = {(r["impl"], r["head_dim"], r["t"]): r for r in rows if "fwd_ms" in r}
    out = []
    for (impl, d, t), r in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        s = by_key.get(("sdpa_flash", d, t))
        if impl == "triton" and s is not None:
            out.append({"head_dim": d, "t": t, "fwd": round(s["fwd_ms"] / r["fwd_ms"], 3),
                        "fwd_bwd": round(s["fwd_bwd_ms"] / r["fwd_bwd_ms"], 3)})
    return out


def write_records(record: dict, json_path: Path, md_path: Path) -> None:
    """The JSON record as measured, and a Markdown summary of it."""
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    env = record["environment"]
    md = [
        f"# Flash attention on {env['hardware']['gpu']} ({env['date']})",
        "",
        f"Command: `{record['command']}`  ",
        f"torch {env['torch']}, triton {record['triton']}, CUDA {record['cuda']}, commit {env['commit']}, "
        f"wall time {record['wall_s']} s.  ",
        f"Causal, {record['dtype']}, B x H = {record['batch']} x {record['heads']}. FLOPs: {record['flop_formula']}",
        "",
        "## Correctness (relative error against float32 SDPA, math backend)",
        "",
        "| D | T | causal | tensor | triton | sdpa flash | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in record["correctness"]:
        md.append(f"| {c['head_dim']} | {c['t']} | {c['causal']} | {c['tensor']} | {c['triton_rel_err']:.2e} "
                  f"| {c['sdpa_flash_rel_err']:.2e} | {'yes' if c['ok'] else 'NO'} |")
    md += ["", "## Speed (median ms; TFLOP/s of useful work)", "",
           "| D | T | impl | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | peak MiB (fwd+bwd) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in record["speed"]:
        if "fwd_ms" in r:
            md.append(f"| {r['head_dim']} | {r['t']} | {r['impl']} | {r['fwd_ms']:.3f} | {r['fwd_tflops']} "
                      f"| {r['fwd_bwd_ms']:.3f} | {r['fwd_bwd_tflops']} | {r['peak_mib_fwd_bwd']} |")
        else:
            md.append(f"| {r['head_dim']} | {r['t']} | {r['impl']} | {r['skipped']} | | | | |")
    md += ["", "## Triton kernel speed relative to SDPA flash (SDPA time / Triton time; > 1 is faster)", "",
           "| D | T | fwd | fwd+bwd |", "|---|---|---|---|"]
    md += [f"| {s['head_dim']} | {s['t']} | {s['fwd']} | {s['fwd_bwd']} |" for s in record["ratios"]]
    goal = [s for s in record["ratios"] if s["t"] == GOAL_T]
    if goal:
        met = all(s["fwd"] >= GOAL_RATIO and s["fwd_bwd"] >= GOAL_RATIO for s in goal)
        md += ["", f"Goal of issue 11 (>= {GOAL_RATIO} x SDPA flash at T = {GOAL_T}, forward and forward+backward): "
                   f"{'met' if met else 'not met'}."]
    md += ["", "Autotuned Triton configurations (per head size and length):", ""]
    for r in record["speed"]:
        if r["impl"] == "triton" and "configs" in r:
            picked = "; ".join(f"{kernel}: {config}" for kernel, config in r["configs"].items())
            md.append(f"- D = {r['head_dim']}, T = {r['t']}: {picked}")
    md_path.write_text("\n".join(md) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("flash_gpu.py needs an NVIDIA GPU with CUDA (it times GPU kernels); no CUDA device is visible. "
              "The CPU measurements of chapter 12 are benchmarks/flash.py.", file=sys.stderr)
        return 2
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("TRITON_INTERPRET=1 is set: unset it, this benchmark times the compiled kernels.", file=sys.stderr)
        return 2
    import triton

    start = time.perf_counter()
    record = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "environment": environment(),
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "batch": args.batch, "heads": args.heads, "dtype": "bfloat16", "causal": True,
        "flop_formula": "forward 4*B*H*T^2*D/2 (causal); forward+backward 3.5x forward; TFLOP/s = FLOPs / median time",
    }
    print(f"{record['environment']['hardware']['gpu']}: checking correctness first", file=sys.stderr)
    record["correctness"] = check_correctness(args.head_dims, noncausal=args.check_noncausal)
    bad = [c for c in record["correctness"] if not c["ok"]]
    if bad:
        print(f"the Triton kernel disagrees with SDPA: {bad}", file=sys.stderr)
        return 1
    fns, rows = attention_fns(), []
    for d in args.head_dims:
        for t in args.t:
            for name in IMPLS:
                if name == "naive" and not fits_naive(args.batch, args.heads, t, torch.cuda.mem_get_info()[0]):
                    rows.append({"impl": name, "t": t, "head_dim": d, "skipped": "scores would not fit in memory"})
                    continue
                rows.append(measure(name, fns[name], args.batch, args.heads, t, d, args))
                r = rows[-1]
                print(f"D={d} T={t} {name}: " + (f"fwd {r['fwd_ms']:.3f} ms, fwd+bwd {r['fwd_bwd_ms']:.3f} ms"
                                                  if "fwd_ms" in r else r["skipped"]), file=sys.stderr)
    record["speed"], record["ratios"] = rows, speed_ratios(rows)
    record["wall_s"] = round(time.perf_counter() - start, 1)
    json_path, md_path = result_path("flash-gpu", "json"), result_path("flash-gpu", "md")
    write_records(record, json_path, md_path)
    print(f"wrote {json_path} and {md_path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
