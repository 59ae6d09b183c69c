"""Inference speed and memory of the course model on this machine (chapter 14).

Measures, with one thread, on the shipped model (``mt.course_checkpoint()``):

* greedy generation of n tokens without and with a KV cache (``GPT.generate`` vs ``mt.generate_cached``);
* the KV cache per token and the validation loss of GQA/MQA variants made by mean-pooling key/value heads
  (``mt.to_grouped_query``), before and after a short uptraining;
* 8 prompts of different lengths, one at a time vs batched (``mt.generate_batch``);
* speculative sampling with a one-block draft trained here for 200 steps (acceptance, tokens per target pass,
  wall-clock speed-up vs the target alone);
* int8 weights (``mt.quantize_linears``): bytes, validation loss, decode time.

    python benchmarks/inference.py [--reps 3]

writes benchmarks/results/inference-<date>-<hardware>.json and .md. Timings are the best of ``--reps`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path  # noqa: E402

import mastering_transformers as mt  # noqa: E402


def best_of(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    mt.seed_everything(0)
    env = environment()
    model, meta = mt.load_checkpoint(mt.course_checkpoint())
    vocab, cfg = meta["vocab"], meta["model_config"]
    data = mt.train.prepare_data(meta["config"])
    L, H, D = cfg.n_layer, cfg.n_head, cfg.head_size
    prompt = torch.tensor([vocab.encode("\n")])

    def val_loss(m):
        return mt.evaluate_loss(m, data.val, 16, cfg.block_size, 10)

    base = val_loss(model)
    out: dict = {"benchmark": "inference", "command": "python benchmarks/inference.py " + " ".join(argv or sys.argv[1:]),
                 "environment": env, "model": cfg.to_dict(), "val_loss_10_batches": base}

    rows = []
    for n in (16, 32, 64, 127):
        a = best_of(lambda: model.generate(prompt, n, temperature=0), args.reps)
        b = best_of(lambda: mt.generate_cached(model, prompt, n, temperature=0), args.reps)
        rows.append({"new_tokens": n, "ms_per_token_no_cache": 1e3 * a / n, "ms_per_token_cache": 1e3 * b / n,
                     "speedup": a / b})
    out["kv_cache"] = rows

    gqa = []
    for n_kv in (4, 2, 1):
        m = model if n_kv == H else mt.to_grouped_query(model, n_kv)
        pooled = val_loss(m)
        if n_kv != H:
            m.train()
            opt = m.configure_optimizer(lr=1e-3, weight_decay=0.0)
            g = torch.Generator().manual_seed(0)
            for _ in range(30):
                xb, yb = mt.get_batch(data.train, 8, cfg.block_size, "cpu", generator=g)
                opt.zero_grad()
                m(xb, yb)[1].backward()
                opt.step()
            m.eval()
        t = best_of(lambda: mt.generate_cached(m, prompt, 100, temperature=0), args.reps)
        gqa.append({"n_kv_head": n_kv, "cache_bytes_per_token": mt.kv_cache_bytes(L, n_kv, D, 1),
                    "val_loss_pooled": pooled, "val_loss_uptrained_30_steps": val_loss(m), "ms_per_token": t * 10})
    out["gqa"] = gqa

    many = [vocab.encode(vocab.decode(data.val[k * 97 : k * 97 + 5 + k].tolist())) for k in range(8)]
    t_one = best_of(lambda: [mt.generate_cached(model, torch.tensor([p]), 50, temperature=0) for p in many], args.reps)
    t_all = best_of(lambda: mt.generate_batch(model, many, 50, temperature=0), args.reps)
    out["batched"] = {"prompts": 8, "new_tokens": 50, "tokens_per_s_one_at_a_time": 400 / t_one,
                      "tokens_per_s_batched": 400 / t_all}

    mt.seed_everything(0)
    draft = mt.GPT(mt.GPTConfig(vocab_size=vocab.size, block_size=cfg.block_size, n_layer=1, n_head=2, n_embd=64,
                                norm="rms", mlp="swiglu", pos="rope", bias=False))
    opt = draft.configure_optimizer(lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        xb, yb = mt.get_batch(data.train, 16, 64, "cpu", generator=g)
        opt.zero_grad()
        draft(xb, yb)[1].backward()
        opt.step()
    draft.eval()
    start = torch.tensor([vocab.encode("KING RICHARD:\n")])
    t_target = best_of(lambda: mt.generate_cached(model, start, 120, generator=torch.Generator().manual_seed(0)),
                       args.reps)
    spec = []
    for k in (2, 4):
        res = {}

        def run():
            res["r"] = mt.speculative_generate(model, draft, start, 120, k=k, generator=torch.Generator().manual_seed(0))

        t = best_of(run, args.reps)
        st = res["r"][1]
        spec.append({"k": k, **st, "acceptance": st["accepted"] / (st["accepted"] + st["rejected"]),
                     "tokens_per_target_pass": 120 / st["rounds"], "speedup_vs_target": t_target / t})
    out["speculative"] = {"draft_params": draft.num_parameters(), "draft_val_loss": val_loss(draft), "runs": spec}

    q_model = mt.quantize_linears(model)
    out["int8"] = {"bytes_fp32": mt.model_bytes(model), "bytes_int8": mt.model_bytes(q_model),
                   "val_loss_fp32": base, "val_loss_int8": val_loss(q_model),
                   "ms_per_token_fp32": 10 * best_of(lambda: mt.generate_cached(model, prompt, 100, temperature=0), args.reps),
                   "ms_per_token_int8": 10 * best_of(lambda: mt.generate_cached(q_model, prompt, 100, temperature=0), args.reps)}
    out["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)

    result_path("inference", "json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# Inference on the course model ({env['date']}, {env['hardware']['cpu']}, {env['hardware']['cpu_count']} cores, "
             f"torch {env['torch']}, 1 thread)", "",
             f"Command: `{out['command'].strip()}`. Load average (1 min): {env['load_average_1min_at_start']} at the start, "
             f"{out['load_average_1min_at_end']} at the end (a shared machine: wall times are inflated).", "",
             "| new tokens | ms/token, no cache | ms/token, KV cache | speed-up |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['new_tokens']} | {r['ms_per_token_no_cache']:.2f} | {r['ms_per_token_cache']:.2f} | "
              f"{r['speedup']:.2f} |" for r in rows]
    lines += ["", "| H_kv | cache bytes/token | val loss pooled | after 30 steps | ms/token |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['n_kv_head']} | {r['cache_bytes_per_token']} | {r['val_loss_pooled']:.3f} | "
              f"{r['val_loss_uptrained_30_steps']:.3f} | {r['ms_per_token']:.2f} |" for r in gqa]
    b = out["batched"]
    lines += ["", f"Batched generation, 8 prompts x 50 tokens: {b['tokens_per_s_one_at_a_time']:.0f} tokens/s one at a time, "
              f"{b['tokens_per_s_batched']:.0f} tokens/s batched.", "",
              "| k | acceptance | tokens per target pass | speed-up vs target |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['k']} | {r['acceptance']:.2f} | {r['tokens_per_target_pass']:.2f} | {r['speedup_vs_target']:.2f} |"
              for r in spec]
    i = out["int8"]
    lines += ["", f"int8 weights: {i['bytes_fp32']:,} -> {i['bytes_int8']:,} bytes; validation loss {i['val_loss_fp32']:.4f} -> "
              f"{i['val_loss_int8']:.4f}; decode {i['ms_per_token_fp32']:.2f} -> {i['ms_per_token_int8']:.2f} ms/token.", ""]
    result_path("inference", "md").write_text("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
