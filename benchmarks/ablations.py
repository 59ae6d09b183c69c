"""Architecture ablations of a tiny character-level GPT on the course corpus (chapter 16).

One baseline (GPT-2's recipe: Pre-LN, LayerNorm, GELU MLP, learned positions, multi-head attention, 2 layers
of width 64) and one change at a time:

    post-ln    Post-LN blocks (the normalisation on the residual path; ``GPTConfig(prenorm=False)``)
    rmsnorm    RMSNorm instead of LayerNorm
    swiglu     SwiGLU instead of the GELU MLP, its hidden size chosen so that the parameters match
    rope       rotary positions instead of a learned position table
    deep       4 layers of width 44 instead of 2 of width 64 (about the same non-embedding parameters)
    gqa        grouped-query attention (2 key/value heads for 4 query heads), the MLP widened to give back
               the parameters the smaller key/value projections saved

Parameters are matched on the *non-embedding* count (Kaplan et al., 2020): the blocks and the final norm.
(RoPE drops the 64 x 64 learned table, which that count leaves out; RMSNorm drops the norms' biases, 0.3 %.)
Every variant trains for the same number of steps on the same batches (equal tokens) with each of several
seeds; the validation loss is evaluated every ``--eval-every`` steps on fixed batches, with the elapsed time,
so the comparison at equal wall time can be read from the same curves: at the (median) training time of the
fastest variant, each variant's loss is interpolated along its own curve (a slower variant is then caught
before its learning rate has decayed, which is the price of being slower). A busy machine makes these times
noisy, so the load average is recorded with each run.

    python benchmarks/ablations.py [--steps 300] [--seeds 0,1,2] [--only baseline,rope] [--threads 1]

writes benchmarks/results/ablations-<date>-<hardware>.json and .md. The training loop is written here (the
course trainer ``mt.train_gpt`` has no Post-LN switch): AdamW, linear warm-up then cosine decay (``mt.lr_at``),
gradient clipping at 1, batch 16 x 64 characters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path  # noqa: E402

import mastering_transformers as mt  # noqa: E402

BASE = dict(block_size=64, n_layer=2, n_head=4, n_embd=64, norm="layer", mlp="gelu", pos="learned", bias=True)


def non_embedding_params(overrides: dict, vocab_size: int = 65) -> int:
    cfg = mt.GPTConfig(vocab_size=vocab_size, **{**BASE, **overrides})
    return mt.GPT(cfg).num_parameters(non_embedding=True)


def matched_d_ff(overrides: dict, target: int) -> int:
    """The MLP hidden size that brings the variant's non-embedding parameter count closest to ``target``."""
    p8, p9 = (non_embedding_params({**overrides, "d_ff": d}) for d in (8, 9))  # the count is linear in d_ff
    return 8 + round((target - p8) / (p9 - p8))


def variants() -> dict[str, dict]:
    target = non_embedding_params({})
    return {
        "baseline": {},
        "post-ln": {"prenorm": False},
        "rmsnorm": {"norm": "rms"},
        "swiglu": {"mlp": "swiglu", "d_ff": matched_d_ff({"mlp": "swiglu"}, target)},
        "rope": {"pos": "rope"},
        "deep": {"n_layer": 4, "n_embd": 44, "d_ff": matched_d_ff({"n_layer": 4, "n_embd": 44}, target)},
        "gqa": {"n_kv_head": 2, "d_ff": matched_d_ff({"n_kv_head": 2}, target)},
    }


def train_run(
    config: mt.GPTConfig, train: torch.Tensor, val: torch.Tensor, steps: int, seed: int, *, batch_size: int = 16,
    lr: float = 3e-3, min_lr: float = 3e-4, warmup: int = 20, eval_every: int = 50, eval_batches: int = 8,
    decay: bool = True, eval_at: tuple[int, ...] = (),
) -> dict:
    """Train a fresh GPT for ``steps`` AdamW steps; -> its evaluation curve (step, tokens, seconds, val loss).

    ``decay=False`` keeps the learning rate constant after the warm-up (Kaplan et al.'s setting, in which the
    points along one run approximate runs of those lengths). ``eval_at`` lists the steps to evaluate at
    (default: every ``eval_every`` steps); the last step is always evaluated.
    """
    torch.manual_seed(seed)
    model = mt.GPT(config)
    opt = model.configure_optimizer(weight_decay=0.1, lr=lr, betas=(0.9, 0.99))
    batches = torch.Generator().manual_seed(seed)
    tokens_per_step = batch_size * config.block_size
    curve, elapsed = [], 0.0

    def evaluate(step: int) -> None:
        loss = mt.evaluate_loss(model, val, batch_size, config.block_size, eval_batches, seed=1234)
        curve.append({"step": step, "tokens": step * tokens_per_step, "seconds": round(elapsed, 3), "val_loss": loss})

    for step in range(steps):
        if (step in eval_at) if eval_at else (step % eval_every == 0):
            evaluate(step)
        t0 = time.perf_counter()
        lr_now = mt.lr_at(step, lr, warmup, steps if decay else 10**9, min_lr) if decay or step < warmup else lr
        for group in opt.param_groups:
            group["lr"] = lr_now
        x, y = mt.get_batch(train, batch_size, config.block_size, generator=batches)
        _, loss = model(x, y)
        loss.backward()
        mt.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        elapsed += time.perf_counter() - t0
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss {loss.item()} at step {step}")
    evaluate(steps)
    return {"params": model.num_parameters(), "non_embedding_params": model.num_parameters(non_embedding=True),
            "curve": curve, "final_val_loss": curve[-1]["val_loss"], "train_seconds": round(elapsed, 3)}


def loss_at_time(curve: list[dict], seconds: float) -> float:
    """The validation loss of a run interpolated (linearly) at ``seconds`` of training; the last one beyond its end."""
    for a, b in zip(curve, curve[1:]):
        if b["seconds"] >= seconds:
            w = (seconds - a["seconds"]) / max(b["seconds"] - a["seconds"], 1e-9)
            return a["val_loss"] + w * (b["val_loss"] - a["val_loss"])
    return curve[-1]["val_loss"]


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    budget = min(statistics.median(r["train_seconds"] for r in rs) for rs in runs.values())
    out = {}
    for name, rs in runs.items():
        finals = [r["final_val_loss"] for r in rs]
        at_time = [loss_at_time(r["curve"], budget) for r in rs]
        out[name] = {
            "non_embedding_params": rs[0]["non_embedding_params"], "params": rs[0]["params"],
            "val_loss_mean": statistics.mean(finals), "val_loss_std": statistics.stdev(finals) if len(rs) > 1 else 0.0,
            "val_loss_at_equal_time_mean": statistics.mean(at_time),
            "val_loss_at_equal_time_std": statistics.stdev(at_time) if len(rs) > 1 else 0.0,
            "seconds_median": statistics.median(r["train_seconds"] for r in rs),
        }
    return {"equal_time_budget_s": budget, "variants": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--out", default="", help="result file stem (default: ablations-<date>-<hardware>)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    table = variants()
    names = [n for n in table if not args.only or n in args.only.split(",")]
    vocab, train, val = mt.load_corpus()
    record = {"benchmark": "ablations", "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
              "threads": args.threads, "steps": args.steps, "seeds": seeds, "batch_size": 16, "base": BASE,
              "variants_overrides": {n: table[n] for n in names}, **environment(), "runs": {}}
    t_all = time.perf_counter()
    runs: dict[str, list[dict]] = {}
    for seed in seeds:  # seeds outermost: a change of load during the benchmark hits every variant alike
        for name in names:
            cfg = mt.GPTConfig(vocab_size=vocab.size, **{**BASE, **table[name]})
            load_before = round(os.getloadavg()[0], 2)
            run = train_run(cfg, train, val, args.steps, seed, eval_every=args.eval_every)
            run.update(seed=seed, load_before=load_before, load_after=round(os.getloadavg()[0], 2))
            runs.setdefault(name, []).append(run)
            print(f"{name:9s} seed {seed}: val {run['final_val_loss']:.4f} in {run['train_seconds']:.1f} s "
                  f"(load {load_before})", flush=True)
    record["runs"] = runs
    record["summary"] = summarise(runs)
    record["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    record["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    path = result_path("ablations", "json") if not args.out else Path(args.out).with_suffix(".json")
    path.write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# Ablations ({record['date']}, {record['hardware']['cpu']}, {args.threads} thread(s))", "",
             f"`{record['command']}`: {args.steps} steps of batch 16 x 64 characters, seeds {seeds}; torch "
             f"{record['torch']}; load average {record['load_average_1min_at_start']} at start, "
             f"{record['load_average_1min_at_end']} at end; {record['total_wall_s']} s in all.", "",
             "| variant | non-embedding params | val loss (mean ± std) | at equal time | s / run |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, s in record["summary"]["variants"].items():
        lines.append(f"| {name} | {s['non_embedding_params']:,} | {s['val_loss_mean']:.4f} ± {s['val_loss_std']:.4f} | "
                     f"{s['val_loss_at_equal_time_mean']:.4f} ± {s['val_loss_at_equal_time_std']:.4f} | "
                     f"{s['seconds_median']:.1f} |")
    lines.append(f"\nEqual time budget: {record['summary']['equal_time_budget_s']:.1f} s of training per run.")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
