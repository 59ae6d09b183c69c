"""Validation loss against model size and tokens seen, for a ladder of tiny character-level GPTs (chapter 16).

Five models of 2 layers and widths 16 to 64 (about 6k to 100k non-embedding parameters) each train for
``--steps`` steps of 16 x 64 characters with a constant learning rate after a short warm-up (Kaplan et al.'s
setting: a point along one run then stands for a run of that length), evaluated at geometrically spaced steps.
Every (N, D, loss) point is fitted with Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta (``mt.fit_loss_surface``);
a bootstrap over the points (resampled with replacement, refitted) gives the uncertainty of the exponents and
of the compute-optimal tokens-per-parameter ratio they imply at this ladder's largest budget.

    python benchmarks/scaling.py [--steps 600] [--widths 16,24,32,48,64] [--boot 100] [--threads 1]

writes benchmarks/results/scaling-<date>-<hardware>.json and .md.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablations import BASE, train_run  # noqa: E402
from common import environment, result_path  # noqa: E402

import mastering_transformers as mt  # noqa: E402


def eval_steps(steps: int) -> tuple[int, ...]:
    out, s = [], 25
    while s < steps:
        out.append(s)
        s *= 2
    return (*out, steps)


def bootstrap(points: list[tuple[float, float, float]], fit: dict, n_boot: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    n, d, y = (torch.tensor(c, dtype=torch.float64) for c in zip(*points))
    fits = []
    for _ in range(n_boot):
        i = torch.randint(len(points), (len(points),), generator=g)
        try:
            fits.append(mt.fit_loss_surface(n[i], d[i], y[i], init=fit))
        except (RuntimeError, ValueError):
            continue
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--widths", default="16,24,32,48,64")
    parser.add_argument("--boot", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]
    vocab, train, val = mt.load_corpus()
    record = {"benchmark": "scaling", "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
              "threads": args.threads, "steps": args.steps, "batch_size": 16, "widths": widths, "base": BASE,
              "schedule": "warm-up 20 steps, then constant lr 3e-3", **environment(), "runs": []}
    t_all = time.perf_counter()
    for width in widths:
        cfg = mt.GPTConfig(vocab_size=vocab.size, **{**BASE, "n_embd": width})
        load_before = round(os.getloadavg()[0], 2)
        run = train_run(cfg, train, val, args.steps, 0, decay=False, eval_at=eval_steps(args.steps))
        run.update(width=width, load_before=load_before, load_after=round(os.getloadavg()[0], 2))
        record["runs"].append(run)
        print(f"width {width:3d} ({run['non_embedding_params']:,} params): val {run['final_val_loss']:.4f} "
              f"in {run['train_seconds']:.1f} s (load {load_before})", flush=True)
    points = [(r["non_embedding_params"], p["tokens"], p["val_loss"]) for r in record["runs"] for p in r["curve"]
              if p["tokens"] > 0]
    fit = mt.fit_loss_surface(*zip(*points))
    boots = bootstrap(points, fit, args.boot)
    budget = 6.0 * max(p[0] for p in points) * max(p[1] for p in points)

    def ratio(f: dict) -> float:
        n_opt, d_opt = mt.compute_optimal(budget, f)
        return d_opt / n_opt

    record["points"] = points
    record["fit"] = fit
    record["largest_budget_flops"] = budget
    record["tokens_per_param_at_budget"] = ratio(fit)
    record["bootstrap"] = {
        "n": len(boots),
        **{f"{k}_std": statistics.stdev(b[k] for b in boots) for k in ("alpha", "beta", "E")},
        "ratio_quantiles_5_50_95": [statistics.quantiles([ratio(b) for b in boots], n=20)[i] for i in (0, 9, 18)],
    }
    record["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    record["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    path = result_path("scaling", "json")
    path.write_text(json.dumps(record, indent=1) + "\n")
    b = record["bootstrap"]
    lines = [f"# Scaling ladder ({record['date']}, {record['hardware']['cpu']}, {args.threads} thread(s))", "",
             f"`{record['command']}`; torch {record['torch']}; load average {record['load_average_1min_at_start']} "
             f"at start, {record['load_average_1min_at_end']} at end; {record['total_wall_s']} s in all.", "",
             "| width | non-embedding params | final val loss | s |", "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['width']} | {r['non_embedding_params']:,} | {r['final_val_loss']:.4f} | {r['train_seconds']:.1f} |"
              for r in record["runs"]]
    lines += ["", f"Fit L = E + A/N^alpha + B/D^beta: E = {fit['E']:.3f} (± {b['E_std']:.3f}), alpha = "
              f"{fit['alpha']:.3f} (± {b['alpha_std']:.3f}), beta = {fit['beta']:.3f} (± {b['beta_std']:.3f}); "
              f"bootstrap of {b['n']} refits.",
              f"Compute-optimal tokens per parameter at C = {budget:.3g} FLOPs: {record['tokens_per_param_at_budget']:.1f}"
              f" (5-95 %: {b['ratio_quantiles_5_50_95'][0]:.1f} to {b['ratio_quantiles_5_50_95'][2]:.1f}); "
              f"Chinchilla's published figure: about {mt.CHINCHILLA_TOKENS_PER_PARAM:.0f}."]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
