"""Training speed and quality of mt.train on this CPU (chapter 11).

The benchmark model is nanoGPT's CPU example: character-level corpus, 4 layers, 4 heads, width 128, block 64,
batch 12, lr 1e-3, dropout 0, 2000 steps (the ``bench`` preset of ``mt.train``). Three parts:

1. speed: tokens/s (median over steps) of the same model under each setting: attention backend, optimiser
   implementation, threads, bf16 autocast, torch.compile; and of a plain nanoGPT-style loop written here as a
   reference (fused QKV projection, F.layer_norm, F.gelu, SDPA, torch's AdamW), measured alongside, so that a
   busy machine shows up as a slower reference rather than as a slower mt.train.
2. the benchmark run: 2000 steps with the fastest settings of part 1; validation loss (the run's own 20-batch
   estimate, as nanoGPT reports it, and a 200-batch one) and tokens/s.
3. the best recipe found (the ``bench-best`` preset: RoPE, SwiGLU, RMSNorm, no biases, learning rate 2e-3) for the
   same 2000 steps, which take about the same wall time as part 2 (its tokens/s are recorded next to part 2's).
4. (``ablation``) the recipe one change at a time, each for the full 2000 steps.

Every measurement records ``os.getloadavg()`` before and after it: other work on the machine slows it down.

    python benchmarks/train_cpu.py [--parts speed,bench,recipe,ablation] [--steps 150]

writes benchmarks/results/train-cpu-<date>-<hardware>.json and .md. ``--parts course`` instead trains the course
model with the command line (``--preset cpu-char``), copies it to checkpoints/shakespeare_char.pt (with its CSV log
and loss curves) and records it in benchmarks/results/shakespeare-char-<date>-<hardware>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path  # noqa: E402

import mastering_transformers as mt  # noqa: E402
from mastering_transformers import train as T  # noqa: E402

SKIP = 20  # steps left out of the medians: warm-up of the allocator, the caches and torch.compile

LLAMA = dict(pos="rope", mlp="swiglu", norm="rms", bias=False)
SPEED_VARIANTS = [
    # (name, overrides of the bench preset, what it changes)
    ("plain", dict(attn_backend="mt", optimizer="mt", threads=1),
     "course attention (explicit softmax), mt.AdamW (a Python loop over parameters), 1 thread"),
    ("+ 2 threads", dict(attn_backend="mt", optimizer="mt", threads=2), "as plain, 2 threads"),
    ("+ SDPA", dict(attn_backend="sdpa", optimizer="mt", threads=2), "PyTorch's fused attention kernel"),
    ("+ torch AdamW (foreach)", dict(attn_backend="sdpa", optimizer="torch", fused=False, threads=2),
     "torch.optim.AdamW, multi-tensor"),
    ("+ fused AdamW", dict(attn_backend="sdpa", optimizer="torch", fused=True, threads=2),
     "torch.optim.AdamW(fused=True): one kernel for all parameters"),
    ("+ bf16 autocast", dict(attn_backend="sdpa", optimizer="torch", fused=True, threads=2, dtype="bfloat16"),
     "matmuls in bfloat16 (AVX-512 BF16 on this CPU)"),
    ("+ torch.compile", dict(attn_backend="sdpa", optimizer="torch", fused=True, threads=2, compile=True),
     "inductor fuses the elementwise work (norms, GELU, residuals) into C++ loops"),
    ("+ torch.compile + bf16", dict(attn_backend="sdpa", optimizer="torch", fused=True, threads=2, compile=True,
                                    dtype="bfloat16"), "both"),
    ("torch.compile, 1 thread", dict(attn_backend="sdpa", optimizer="torch", fused=True, threads=1, compile=True),
     "the compiled model on one thread"),
    ("fused AdamW, 1 thread", dict(attn_backend="sdpa", optimizer="torch", fused=True, threads=1),
     "the eager model on one thread"),
    ("bench-best model, fused AdamW", dict(attn_backend="sdpa", optimizer="torch", fused=True, threads=2, **LLAMA),
     "part 3's model (RoPE, SwiGLU, RMSNorm, no bias): its cost per token"),
    ("bench-best model, torch.compile",
     dict(attn_backend="sdpa", optimizer="torch", fused=True, threads=2, compile=True, **LLAMA),
     "part 3's model, compiled"),
]


def load() -> float:
    return round(os.getloadavg()[0], 2)


# -------------------------------------------------------------------------------------------------
# The reference: a plain nanoGPT-style model and loop, written out here (not the course's code).
# -------------------------------------------------------------------------------------------------


class RefBlock(nn.Module):
    def __init__(self, c: int, h: int):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.fc, self.out = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(c, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class RefGPT(nn.Module):
    def __init__(self, v: int, t: int, c: int, n_layer: int, h: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(v, c), nn.Embedding(t, c)
        self.blocks = nn.ModuleList(RefBlock(c, h) for _ in range(n_layer))
        self.ln, self.head = nn.LayerNorm(c), nn.Linear(c, v, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx, targets):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return F.cross_entropy(self.head(self.ln(x)).flatten(0, 1), targets.flatten())


def reference_speed(steps: int, threads: int) -> dict:
    cfg = mt.make_config("bench")
    data = T.prepare_data(cfg)
    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = RefGPT(data.vocab.size, cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.n_head)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    times, l0 = [], load()
    for _ in range(steps):
        t0 = time.perf_counter()
        x, y = mt.get_batch(data.train, cfg.batch_size, cfg.block_size, generator=g)
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        loss.item()
        times.append(time.perf_counter() - t0)
    torch.set_num_threads(before_threads)
    tokens = cfg.batch_size * cfg.block_size
    return {"tokens_per_s": round(tokens / statistics.median(times[SKIP:])), "load_before": l0, "load_after": load()}


# -------------------------------------------------------------------------------------------------
# The three parts
# -------------------------------------------------------------------------------------------------


def speed_of(overrides: dict, steps: int) -> dict:
    cfg = mt.make_config("bench", max_iters=steps, warmup_iters=min(10, steps), eval_interval=10**6, eval_iters=1,
                         sample_chars=0, **overrides)
    l0, t0 = load(), time.perf_counter()
    result = mt.train_gpt(cfg, write_files=False)
    wall = time.perf_counter() - t0
    rates = [r["tokens_per_s"] for r in result.log if r["kind"] == "train"][SKIP:]
    first = next(r for r in result.log if r["kind"] == "train")  # includes torch.compile's compilation
    return {"tokens_per_s": round(statistics.median(rates)),
            "first_step_s": round(cfg.tokens_per_iter / first["tokens_per_s"], 2),
            "wall_s": round(wall, 1), "load_before": l0, "load_after": load()}


def part_speed(steps: int) -> list[dict]:
    rows = []
    for name, overrides, what in SPEED_VARIANTS:
        ref = reference_speed(steps, overrides.get("threads", 2))
        row = {"name": name, "overrides": overrides, "what": what, **speed_of(overrides, steps),
               "reference_tokens_per_s": ref["tokens_per_s"]}
        row["vs_reference"] = round(row["tokens_per_s"] / ref["tokens_per_s"], 3)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def full_run(preset: str, overrides: dict, out_dir: str) -> dict:
    cfg = mt.make_config(preset, out_dir=out_dir, **overrides)
    l0, t0 = load(), time.perf_counter()
    result = mt.train_gpt(cfg, write_files=True)
    wall = time.perf_counter() - t0
    l1 = load()
    data = T.prepare_data(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or threads)
    val200 = mt.evaluate_loss(result.model, data.val, 12, 64, 200, seed=cfg.eval_seed)  # 153,600 characters
    torch.set_num_threads(threads)
    rates = [r["tokens_per_s"] for r in result.log if r["kind"] == "train"][SKIP:]
    return {
        "preset": preset, "overrides": overrides, "config": cfg.to_dict(),
        "parameters": result.model.num_parameters(), "steps": cfg.max_iters,
        "tokens_trained": cfg.max_iters * cfg.tokens_per_iter,
        "val_loss": round(result.final_eval["val_loss"], 4), "train_loss": round(result.final_eval["train_loss"], 4),
        "val_loss_200_batches_of_12x64": round(val200, 4),
        "tokens_per_s_median": round(statistics.median(rates)), "wall_s": round(wall, 1),
        "training_s": round(sum(cfg.tokens_per_iter / r["tokens_per_s"] for r in result.log if r["kind"] == "train"),
                            1),
        "load_before": l0, "load_after": l1,
        "evals": [(r["step"], round(r["val_loss"], 4)) for r in result.evals],
    }


ABLATION = [
    # (name, overrides of the bench preset): what each change of the recipe gives at the same 2000 steps
    ("bench (learned positions, GELU, LayerNorm, lr 1e-3)", {}),
    ("+ lr 2e-3", dict(lr=2e-3, min_lr=2e-4)),
    ("RoPE only (lr 1e-3)", dict(pos="rope")),
    ("RoPE, SwiGLU, RMSNorm, no bias, lr 2e-3 (bench-best)", dict(pos="rope", mlp="swiglu", norm="rms", bias=False,
                                                                 lr=2e-3, min_lr=2e-4)),
    ("as bench-best, lr 3e-3", dict(pos="rope", mlp="swiglu", norm="rms", bias=False, lr=3e-3, min_lr=3e-4)),
]


def part_ablation(out_dir: str, threads: int) -> list[dict]:
    rows = []
    for name, overrides in ABLATION:
        run = full_run("bench", {**overrides, "threads": threads}, f"{out_dir}/ablation")
        row = {"name": name, **{k: run[k] for k in ("overrides", "val_loss", "val_loss_200_batches_of_12x64",
                                                     "train_loss", "tokens_per_s_median", "wall_s", "load_before",
                                                     "load_after")}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def part_course(out_dir: str) -> dict:
    """Train the course model with the command line, ship it in checkpoints/ and record how it was made."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    command = ["python", "-m", "mastering_transformers.train", "--preset", "cpu-char", f"--out_dir={out_dir}"]
    env = environment()
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, *command[1:]], cwd=root, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if run.returncode:
        raise SystemExit(f"the training run failed with status {run.returncode}")
    return ship_course_model(out_dir, " ".join(command), env, wall, load())


def ship_course_model(out_dir: str, command: str, env: dict, wall: float, load_at_end: float) -> dict:
    """Copy a finished cpu-char run into checkpoints/ and write its record (JSON and Markdown)."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    out, ship = Path(out_dir), root / "checkpoints"
    ship.mkdir(exist_ok=True)
    shutil.copyfile(out / "model.pt", ship / "shakespeare_char.pt")
    shutil.copyfile(out / "log.csv", ship / "shakespeare_char.csv")
    shutil.copyfile(out / "loss.png", ship / "shakespeare_char.png")
    model, meta = mt.load_checkpoint(ship / "shakespeare_char.pt")
    log = T.read_log_csv(ship / "shakespeare_char.csv")
    rates = [r["tokens_per_s"] for r in log if r["kind"] == "train"][SKIP:]
    cfg = meta["config"]
    record = {
        "what": "the course model, shipped as checkpoints/shakespeare_char.pt (+ .csv log, .png curves)",
        "command": command, "date": env["date"], "hardware": env["hardware"], "torch": env["torch"],
        "python": env["python"], "commit": env["commit"],
        "load_average_1min_at_start": env["load_average_1min_at_start"], "load_average_1min_at_end": load_at_end,
        "wall_s": round(wall, 1), "training_wall_s": round(log[-1]["elapsed_s"], 1),
        "tokens_per_s_median": round(statistics.median(rates)), "steps": meta["step"],
        "tokens_trained": meta["step"] * cfg.tokens_per_iter, "parameters": model.num_parameters(),
        "config": cfg.to_dict(), "final_val_loss": round(meta["final_eval"]["val_loss"], 6),
        "final_train_loss": round(meta["final_eval"]["train_loss"], 6), "eval_settings": meta["eval_settings"],
        "checkpoint_bytes": (ship / "shakespeare_char.pt").stat().st_size,
        "sample": (out / "sample.txt").read_text(encoding="utf-8"),
    }
    result_path("shakespeare-char", "json").write_text(json.dumps(record, indent=1))
    md = [
        "# The course model: checkpoints/shakespeare_char.pt", "",
        f"Trained on {record['date']} with `{record['command']}` (commit {record['commit']}) on "
        f"{env['hardware']['cpu']} ({env['hardware']['cpu_count']} cores), torch {record['torch']}, "
        f"Python {record['python']}; recorded by `python benchmarks/train_cpu.py --parts course`.", "",
        "| parameters | steps | characters trained on | wall time (s) | median tokens/s | final validation loss | "
        "load average at start / end |", "|---|---|---|---|---|---|---|",
        f"| {record['parameters']:,} | {record['steps']} | {record['tokens_trained']:,} | {record['wall_s']} | "
        f"{record['tokens_per_s_median']:,} | {record['final_val_loss']:.4f} | "
        f"{record['load_average_1min_at_start']} / {record['load_average_1min_at_end']} |", "",
        f"The validation loss is the mean over {record['eval_settings']['n_batches']} fixed batches of "
        f"{record['eval_settings']['batch_size']} windows of {record['eval_settings']['block_size']} characters "
        f"(seed {record['eval_settings']['seed']}) of the last 10% of the corpus; `tests/test_checkpoint.py` "
        "recomputes it from the shipped file. Wall time includes starting Python, loading the corpus, the "
        "evaluations and the sample; other processes shared the CPU when the load average is above ~1.", "",
        "Model: " + ", ".join(f"{k}={cfg.to_dict()[k]}" for k in T.MODEL_KEYS) + ".", "",
        "Sample at the end of the run (temperature 0.8):", "", "```", record["sample"], "```", "",
    ]
    result_path("shakespeare-char", "md").write_text("\n".join(md))
    return record


def write_markdown(record: dict, path: Path) -> None:
    env = record["environment"]
    lines = [
        "# Training on the CPU: speed settings, the benchmark run, the best recipe",
        "",
        f"Date {env['date']}, {env['hardware']['cpu']} ({env['hardware']['cpu_count']} cores), torch {env['torch']}, "
        f"Python {env['python']}. Each part names the command that measured it.",
        "",
        "Load average (1 min) is recorded before and after every measurement: other processes shared the two "
        "cores, and a load above ~1 means they competed with the benchmark for the CPU.",
        "",
    ]

    def measured(stamp):
        return [f"Measured at {stamp['time']} (commit {stamp['commit']}) by `{stamp['command']}`.", ""]

    if record.get("speed"):
        lines += ["## 1. Speed settings (bench model, median tokens/s over steps "
                  f"{SKIP}..{record['speed_steps']})", "", *measured(record["speed_stamp"]),
                  "| setting | tokens/s | nanoGPT-style reference, same threads, measured just before | ratio | "
                  "first step (s) | load before / after | what it changes |", "|---|---|---|---|---|---|---|"]
        for r in record["speed"]:
            lines.append(f"| {r['name']} | {r['tokens_per_s']:,} | {r['reference_tokens_per_s']:,} | "
                         f"{r['vs_reference']} | {r['first_step_s']} | {r['load_before']} / {r['load_after']} | "
                         f"{r['what']} |")
        lines.append("")
    titles = (("bench", "2. The benchmark run (2000 steps)"), ("recipe", "3. The best recipe, same steps"))
    for key, title in titles:
        run = record.get(key)
        if not run:
            continue
        lines += [f"## {title}", "", *measured(run["stamp"]),
                  f"Preset `{run['preset']}` with {json.dumps(run['overrides'])}: {run['parameters']:,} parameters, "
                  f"{run['steps']} steps, {run['tokens_trained']:,} tokens.", "",
                  "| validation loss (run's 20-batch estimate) | validation loss (200 batches of 12 x 64) | "
                  "train loss | median tokens/s | wall time (s) | load before / after |", "|---|---|---|---|---|---|",
                  f"| {run['val_loss']} | {run['val_loss_200_batches_of_12x64']} | {run['train_loss']} | "
                  f"{run['tokens_per_s_median']:,} | {run['wall_s']} | {run['load_before']} / {run['load_after']} |",
                  "", "Validation loss at each evaluation: " + ", ".join(f"{s}: {v}" for s, v in run["evals"]), ""]
    if record.get("ablation"):
        lines += ["## The recipe, one change at a time (2000 steps of batch 12 x 64, as the benchmark)", "",
                  *measured(record["ablation_stamp"]),
                  "| recipe | validation loss (run's 20-batch estimate) | validation loss (200 batches of 12 x 64) | "
                  "train loss | median tokens/s | wall time (s) | load before / after |",
                  "|---|---|---|---|---|---|---|"]
        for r in record["ablation"]:
            lines.append(f"| {r['name']} | {r['val_loss']} | {r['val_loss_200_batches_of_12x64']} | "
                         f"{r['train_loss']} | {r['tokens_per_s_median']:,} | {r['wall_s']} | "
                         f"{r['load_before']} / {r['load_after']} |")
        lines.append("")
    if record.get("notes"):
        lines += ["## Notes", "", *record["notes"], ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="speed,bench,recipe")
    parser.add_argument("--steps", type=int, default=150, help="steps per speed measurement")
    parser.add_argument("--bench-overrides", default="", help="speed settings of part 2 as key=value,...; "
                        "default: the fastest variant of part 1")
    parser.add_argument("--out-dir", default="/tmp/train_cpu_runs")
    parser.add_argument("--ablation-threads", type=int, default=1, help="threads for the ablation runs")
    parser.add_argument("--notes", help="a Markdown file of notes on the results, added to the day's record "
                        "(with --parts none: only re-render the record with them)")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    command = "python benchmarks/train_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    env = environment()
    stamp = {"command": command, "date": env["date"], "time": time.strftime("%H:%M"), "commit": env["commit"],
             "load_average_1min_at_start": env["load_average_1min_at_start"]}
    json_path = result_path("train-cpu", "json")
    # parts run separately accumulate into the day's record; each part keeps the command that measured it
    record = json.loads(json_path.read_text()) if json_path.exists() else {"environment": env}
    if args.notes:
        record["notes"] = Path(args.notes).read_text().strip().splitlines()
    if "speed" in parts:
        record["speed"] = part_speed(args.steps)
        record["speed_steps"], record["speed_stamp"] = args.steps, stamp
    if args.bench_overrides:
        overrides = {k: T.parse_value(k, v) for k, v in (kv.split("=") for kv in args.bench_overrides.split(","))}
    elif record.get("speed"):  # the fastest settings of the bench model itself
        fastest = max((r for r in record["speed"] if "pos" not in r["overrides"]), key=lambda r: r["tokens_per_s"])
        overrides = dict(fastest["overrides"])
    else:
        overrides = {}
    if "bench" in parts:
        record["bench"] = {**full_run("bench", overrides, f"{args.out_dir}/bench"), "stamp": stamp}
        print(json.dumps(record["bench"]), flush=True)
    if "ablation" in parts:
        record["ablation"] = part_ablation(args.out_dir, args.ablation_threads)
        record["ablation_stamp"] = stamp
    if "recipe" in parts:
        record["recipe"] = {**full_run("bench-best", overrides, f"{args.out_dir}/bench-best"), "stamp": stamp}
        print(json.dumps(record["recipe"]), flush=True)
    if "course" in parts:
        course = part_course(f"{args.out_dir}/cpu-char")
        print(json.dumps({k: v for k, v in course.items() if k != "sample"}), flush=True)
        if parts == {"course"}:
            return 0
    json_path.write_text(json.dumps(record, indent=1))
    write_markdown(record, result_path("train-cpu", "md"))
    print(f"wrote {json_path} and its .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
