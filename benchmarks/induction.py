"""When do induction heads appear during training? (chapter 15)

A small GPT (2 layers, 4 heads, width 64; the course model's Llama-style blocks) is trained by the course trainer
(``mt.train_gpt``) on text where copying pays: segments of 6 to 16 random letters (a-z, A-Z), each written three
times in a row. The run is stopped every ``--every`` steps and resumed from the ``ckpt.pt`` the trainer saved, and
each of those checkpoints is measured on a fixed batch of repeated random letters (20 letters, then the same 20):

* the loss on the first copy (nothing to copy from: about ln 52 = 3.95) and on the second copy;
* every head's induction score (mean weight from a second-copy token to the token after its first occurrence),
  previous-token score and first-token score (``mt.head_scores``).

    python benchmarks/induction.py [--steps 2000] [--every 50]

writes benchmarks/results/induction-<date>-<hardware>.json and .md and copies the final model to
checkpoints/induction_char.pt, which chapter 15 loads (it re-measures it and checks it against the last row).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path  # noqa: E402

import mastering_transformers as mt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PERIOD, EVAL_BATCH, EVAL_SEED = 20, 32, 0  # the measurement batch: 32 sequences of 20 random letters, twice


def repeats_text(n_chars: int = 400_000, seed: int = 0, low: int = 6, high: int = 16, copies: int = 3) -> str:
    """Segments of ``low``..``high`` random letters, each written ``copies`` times: copying is the only skill that pays."""
    rng = random.Random(seed)
    parts, n = [], 0
    while n < n_chars:
        segment = "".join(rng.choice(LETTERS) for _ in range(rng.randint(low, high)))
        parts.append(segment * copies)
        n += len(segment) * copies
    return "".join(parts)


def measure(model, vocab_size: int) -> dict:
    """Losses on both copies and every head's scores, on the fixed batch of repeated random letters."""
    idx = mt.repeated_random_tokens(EVAL_BATCH, PERIOD, vocab_size, torch.Generator().manual_seed(EVAL_SEED))
    with torch.no_grad():
        losses = mt.token_losses(model, idx)  # (B, 2P - 1): position t predicts token t + 1
    scores = mt.head_scores(mt.attention_maps(model, idx), period=PERIOD)
    return {
        "loss_first_copy": round(losses[:, : PERIOD - 1].mean().item(), 5),
        "loss_second_copy": round(losses[:, PERIOD:].mean().item(), 5),
        **{f"{kind}_score": [[round(float(s), 4) for s in row] for row in table] for kind, table in scores.items()},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--out", default="", help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    env = environment()
    work = Path(args.out or tempfile.mkdtemp(prefix="induction-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "repeats.txt"
    data.write_text(repeats_text(), encoding="utf-8")
    config = mt.make_config(
        None, data=str(data), block_size=64, n_layer=2, n_head=4, n_embd=64, batch_size=32, max_iters=args.steps,
        lr=1e-3, min_lr=1e-4, warmup_iters=min(50, args.steps), eval_interval=args.every, eval_iters=4, sample_chars=0, threads=1,
        pos="rope", mlp="swiglu", norm="rms", bias=False, seed=0, out_dir=str(work / "run"),
    )
    rows, started = [], time.perf_counter()
    ckpt = work / "run" / "ckpt.pt"
    for stop in range(0, args.steps + 1, args.every):
        result = mt.train_gpt(config, resume=ckpt if stop else None, stop_at=stop)
        model, meta = mt.load_checkpoint(ckpt)  # the checkpoint the trainer saved at this step
        assert meta["step"] == stop, (meta["step"], stop)
        row = {"step": stop, "val_loss": None, **measure(model, meta["vocab"].size), "elapsed_s": round(time.perf_counter() - started, 1)}
        rows.append(row)
        best = max(max(r) for r in row["induction_score"])
        print(f"step {stop}: second copy {row['loss_second_copy']:.3f}, best induction score {best:.2f}", flush=True)
    val = {r["step"]: r["val_loss"] for r in result.log if r["kind"] == "eval"}  # the whole run's log
    for row in rows:
        row["val_loss"] = round(val[row["step"]], 5) if row["step"] in val else None
    final = work / "run" / "model.pt"
    target = ROOT / "checkpoints" / "induction_char.pt"
    shutil.copy(final, target)
    command = "python benchmarks/induction.py " + " ".join(argv)
    record = {
        "what": "induction heads during training: a 2-layer GPT on text of repeated random letter segments",
        "command": command.strip(), **env, "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "wall_s": round(time.perf_counter() - started, 1), "config": config.to_dict() | {"out_dir": "", "data": "repeats"},
        "data": {"chars": 400_000, "letters": len(LETTERS), "segment_length": [6, 16], "copies": 3, "seed": 0},
        "measurement": {"period": PERIOD, "batch": EVAL_BATCH, "seed": EVAL_SEED,
                        "generator": "mt.repeated_random_tokens(32, 20, 52, torch.Generator().manual_seed(0))"},
        "checkpoint": "checkpoints/induction_char.pt", "parameters": model.num_parameters(), "series": rows,
    }
    out = result_path("induction", "json")
    out.write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        "# Induction heads during training (chapter 15)", "",
        f"Recorded on {env['date']} with `{record['command']}` (commit {env['commit']}) on {env['hardware']['cpu']} "
        f"({env['hardware']['cpu_count']} cores), torch {env['torch']}; load average {env['load_average_1min_at_start']} "
        f"at the start, {record['load_average_1min_at_end']} at the end; wall time {record['wall_s']} s.", "",
        f"Model: {model.num_parameters():,} parameters, 2 layers x 4 heads, width 64, RoPE, RMSNorm, SwiGLU; trained by "
        f"`mt.train_gpt` (batch 32, block 64, lr 1e-3 with warm-up 50 and cosine decay) on 400,000 characters of "
        f"random letter segments (6-16 letters from 52) each written three times. Measured at every checkpoint on "
        f"32 sequences of 20 random letters repeated once.", "",
        "| step | val loss | loss, first copy | loss, second copy | best induction score | best previous-token score |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ind = max(max(x) for x in r["induction_score"])
        prev = max(max(x) for x in r["previous-token_score"])
        val = "" if r["val_loss"] is None else f"{r['val_loss']:.3f}"
        lines.append(f"| {r['step']} | {val} | {r['loss_first_copy']:.3f} | {r['loss_second_copy']:.3f} | {ind:.2f} | {prev:.2f} |")
    result_path("induction", "md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out} and {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
