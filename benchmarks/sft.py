"""Supervised fine-tuning of the course GPT on instructions built from the corpus: full vs LoRA (chapter 16).

The shipped course model (``mt.load_checkpoint(mt.course_checkpoint())``) gets three special tokens as new
embedding rows (``mt.add_special_tokens``) and is fine-tuned on ``mt.instruction_dataset()`` ("Which play is this
from?" over four tragedies, balanced; "Who says this line?" for each play's three main speakers), the loss on the
response tokens only. Two ways, the same steps, batches and seed:

    full   every parameter trained (lr 1e-3)
    lora   rank-8 LoRA on every linear layer of the blocks, plus the token embedding (lr 3e-3)

Held-out examples (never trained on, and from plays in the part of the corpus the base model was validated on,
not trained on) measure: multiple-choice accuracy on the play question (the least-NLL title of the four;
chance 25 %), and exact-match accuracy of greedy answers (the format has to be learned: the base model never
emits ``<|end|>``).

    python benchmarks/sft.py [--steps 150] [--threads 1]

writes benchmarks/results/sft-<date>-<hardware>.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path  # noqa: E402

import mastering_transformers as mt  # noqa: E402

N_CHOICE, N_GENERATE = 200, 80  # held-out examples for the two measures


def measure(model, tok, test, titles) -> dict:
    t0 = time.perf_counter()
    plays = [e for e in test if e.task == "play"][:N_CHOICE]
    out = {"play_choice_accuracy": mt.choice_accuracy(model, tok, plays, titles)}
    out.update({f"exact_{k}": v for k, v in mt.sft_accuracy(model, tok, test[:N_GENERATE]).items()})
    out["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    examples = mt.instruction_dataset()
    n_test = len(examples) // 5
    test, train = examples[:n_test], examples[n_test:]
    titles = sorted({e.response for e in examples if e.task == "play"})
    base, meta = mt.load_checkpoint(mt.course_checkpoint())
    tok = mt.SFTTokenizer(meta["vocab"])
    model0 = mt.add_special_tokens(base).eval()
    record = {"benchmark": "sft", "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
              "threads": args.threads, "steps": args.steps, "batch_size": args.batch_size,
              "n_train": len(train), "n_test": len(test), "titles": titles, **environment()}
    t_all = time.perf_counter()
    record["base"] = measure(model0, tok, test, titles)
    print("base", record["base"], flush=True)
    for name, lr in (("full", 1e-3), ("lora", 3e-3)):
        model = copy.deepcopy(model0)
        if name == "lora":
            mt.apply_lora(model, rank=8, alpha=16.0)
        trainable = mt.finetune.trainable_parameters(model)
        t0 = time.perf_counter()
        losses = mt.sft_train(model, tok, train, steps=args.steps, batch_size=args.batch_size, lr=lr, seed=0)
        seconds = round(time.perf_counter() - t0, 1)
        if name == "lora":
            mt.merge_lora(model)
        record[name] = {"lr": lr, "trainable_params": trainable, "train_seconds": seconds, "losses": losses,
                        "load_after_training": round(os.getloadavg()[0], 2), **measure(model, tok, test, titles)}
        print(name, {k: v for k, v in record[name].items() if k != "losses"}, flush=True)
    record["total_params"] = model0.num_parameters()
    record["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    record["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    path = result_path("sft", "json")
    path.write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# SFT of the course model ({record['date']}, {record['hardware']['cpu']}, {args.threads} thread(s))",
             "", f"`{record['command']}`: {args.steps} steps of {args.batch_size} examples; {len(train)} training, "
             f"{len(test)} held-out examples; torch {record['torch']}; load average "
             f"{record['load_average_1min_at_start']} at start, {record['load_average_1min_at_end']} at end; "
             f"{record['total_wall_s']} s in all.", "",
             "| model | trainable params | play (4-way choice) | exact match: play | speaker | all | train s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("base", "full", "lora"):
        r = record[name]
        lines.append(f"| {name} | {r.get('trainable_params', 0):,} | {r['play_choice_accuracy']:.3f} | "
                     f"{r.get('exact_play', 0):.3f} | {r.get('exact_speaker', 0):.3f} | {r['exact_all']:.3f} | "
                     f"{r.get('train_seconds', 0)} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
