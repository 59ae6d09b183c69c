"""The GPU recipe of chapter 13: a GPT-2-small-shaped model on the BPE-tokenised corpus, timed, with MFU.

One script, about four minutes on one H100 or H200 (torch 2.11+, Triton 3.6):

1. trains a byte-level BPE tokenizer on the course corpus (``mt.train_bpe``, chapter 9; ``--bpe_vocab`` tokens)
   and encodes the whole text (90 % training, 10 % validation);
2. for each attention backend (``--backends``, default PyTorch's SDPA and the course's Triton flash attention of
   chapter 12): builds the ``gpt2-124m`` preset's model (12 x 768, 12 heads, context 1024, embedding padded to
   50,304 rows), compiles it, and trains it with bfloat16 autocast and fused AdamW for ``--train_s`` seconds
   (warm-up then cosine over that budget), micro-batches of ``--micro_batch`` x 1024 tokens;
3. records per backend: compile time, tokens/s (median over the timed steps, the first ``--skip`` excluded),
   MFU = tokens/s x ``mt.flops_per_token`` / the GPU's dense bf16 peak (``mt.PEAK_FLOPS``), peak memory
   (``torch.cuda.max_memory_allocated``), the training-loss curve and a final validation loss.

    python benchmarks/gpu_train.py                      # on a CUDA machine: the recorded run
    python benchmarks/gpu_train.py --smoke              # the same code path, tiny, on the CPU (a test)

writes benchmarks/results/gpu-train-<date>-<hardware>.json and .md (``--smoke`` writes into ``--out_dir`` only,
by default a temporary folder, so that a CPU check never looks like a recorded GPU result). A backend that fails
(for example the Triton kernel on a GPU it does not support) is recorded with its error and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path  # noqa: E402

import mastering_transformers as mt  # noqa: E402


def peak_flops(device: torch.device) -> tuple[str, float | None]:
    """The dense bf16 peak of this GPU from ``mt.PEAK_FLOPS`` (None for an unknown GPU or the CPU)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    for key, gpu in (("H200", "H200-bf16"), ("H100", "H100-SXM-bf16"), ("A100", "A100-bf16")):
        if key in name:
            return name, mt.PEAK_FLOPS[gpu]
    return name, None


def bpe_data(n_chars: int | None, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The corpus as BPE token ids (train, val) and facts about the tokenizer."""
    text = mt.build_corpus()
    if n_chars:
        text = text[:n_chars]
    t0 = time.perf_counter()
    vocab, merges = mt.train_bpe(text, vocab_size, special_tokens=["<|endoftext|>"])
    tok = mt.Tokenizer(vocab, merges, special_tokens=["<|endoftext|>"])
    t1 = time.perf_counter()
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    t2 = time.perf_counter()
    train, val = mt.train_val_split(ids, 0.1)
    info = {"chars": len(text), "tokens": len(ids), "vocab": tok.vocab_size, "bytes_per_token": len(text.encode()) / len(ids),
            "train_bpe_s": round(t1 - t0, 2), "encode_s": round(t2 - t1, 2)}
    return train, val, info


def run_backend(backend: str, args, train: torch.Tensor, val: torch.Tensor, device: torch.device) -> dict:
    """Train one model with ``backend`` attention for ``args.train_s`` seconds; its measurements."""
    preset = mt.make_config(args.preset, attn_backend=backend)
    gcfg = mt.train.model_config(preset, vocab_size=preset.vocab_size or args.bpe_vocab + 1)
    if args.smoke:
        gcfg = mt.GPTConfig(vocab_size=args.bpe_vocab + 1, block_size=64, n_layer=2, n_head=2, n_embd=64,
                            attn_backend=backend)
    T = gcfg.block_size
    torch.manual_seed(0)
    model = mt.GPT(gcfg).to(device)
    fused = device.type == "cuda"
    opt = model.configure_optimizer(preset.weight_decay, preset.lr, (preset.beta1, preset.beta2), fused=fused)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    autocast = mt.autocast_context(device, dtype)
    forward = torch.compile(model) if args.compile else model
    gen = torch.Generator().manual_seed(1)
    f_tok = mt.flops_per_token(gcfg)
    gpu_name, peak = peak_flops(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(lr: float) -> float:
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = mt.get_batch(train, args.micro_batch, T, device, generator=gen)
        with autocast:
            _, loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.perf_counter()
    first = step(preset.min_lr).item()  # compiles (forward and backward) on the first call
    if device.type == "cuda":
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0

    rows, times, start = [], [], time.perf_counter()
    warmup = 30
    while time.perf_counter() - start < args.train_s and len(rows) < args.max_steps:
        i = len(rows)
        progress = min(1.0, (time.perf_counter() - start) / args.train_s)
        lr = preset.lr * min(1.0, (i + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        ts = time.perf_counter()
        loss = step(lr)
        loss_value = loss.item()  # synchronises with the GPU
        times.append(time.perf_counter() - ts)
        rows.append({"step": i, "lr": lr, "loss": loss_value, "elapsed_s": round(time.perf_counter() - start, 3)})
        if not math.isfinite(loss_value):
            break
    timed = times[args.skip:] or times
    tokens_per_s = args.micro_batch * T / statistics.median(timed)
    val_loss = mt.evaluate_loss(forward, val, args.micro_batch, T, n_batches=args.eval_batches, device=device,
                                dtype=dtype)
    return {
        "backend": backend, "model": gcfg.to_dict(), "parameters": model.num_parameters(),
        "flops_per_token": f_tok, "micro_batch_tokens": args.micro_batch * T, "compile": args.compile,
        "dtype": dtype, "compile_s": round(compile_s, 2), "first_loss": first, "steps": len(rows),
        "tokens_per_s_median": round(tokens_per_s, 1), "gpu": gpu_name, "peak_flops": peak,
        "mfu": None if peak is None else round(mt.mfu(tokens_per_s, f_tok, peak), 4),
        "max_memory_allocated_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "final_train_loss": rows[-1]["loss"] if rows else None, "val_loss": val_loss, "log": rows,
    }


def markdown(record: dict) -> str:
    env, d = record["environment"], record["data"]
    lines = [f"# GPU recipe of chapter 13 ({env['date']})", "",
             f"`{record['command']}` on {env['hardware']['gpu'] or env['hardware']['cpu']}, torch {env['torch']}, "
             f"commit `{env['commit']}`; load average {env['load_average_1min_at_start']} at the start.", "",
             f"Data: the course corpus, {d['chars']:,} characters as {d['tokens']:,} BPE tokens (vocabulary "
             f"{d['vocab']}, {d['bytes_per_token']:.2f} bytes per token; BPE trained in {d['train_bpe_s']} s).", "",
             "| attention | compile (s) | steps | tokens/s (median) | MFU | peak memory (GiB) | train loss | val loss |",
             "|---|---|---|---|---|---|---|---|"]
    for r in record["runs"]:
        if "error" in r:
            lines.append(f"| {r['backend']} | failed: {r['error'][:120]} | | | | | | |")
            continue
        mem = r["max_memory_allocated_bytes"]
        mfu_text = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(f"| {r['backend']} | {r['compile_s']} | {r['steps']} | {r['tokens_per_s_median']:,.0f} | "
                     f"{mfu_text} | {'n/a' if mem is None else f'{mem / 2**30:.1f}'} | "
                     f"{r['final_train_loss']:.3f} | {r['val_loss']:.3f} |")
    lines += ["", "MFU = tokens/s x mt.flops_per_token (6N + 12 L T C) / the data-sheet dense bf16 peak.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny model and data on the CPU: checks the code path")
    p.add_argument("--preset", default="gpt2-124m")
    p.add_argument("--backends", default="sdpa,triton")
    p.add_argument("--bpe_vocab", type=int, default=8192)
    p.add_argument("--micro_batch", type=int, default=16)
    p.add_argument("--train_s", type=float, default=45.0, help="seconds of timed training per backend")
    p.add_argument("--max_steps", type=int, default=100_000)
    p.add_argument("--skip", type=int, default=5, help="steps left out of the median (warm-up)")
    p.add_argument("--eval_batches", type=int, default=10)
    p.add_argument("--no_compile", dest="compile", action="store_false")
    p.add_argument("--out_dir", default=None, help="where --smoke writes (default: a temporary folder)")
    args = p.parse_args(argv)
    device = torch.device("cuda") if torch.cuda.is_available() and not args.smoke else torch.device("cpu")
    if args.smoke:
        args.bpe_vocab, args.micro_batch = min(args.bpe_vocab, 300), min(args.micro_batch, 4)
        args.train_s, args.max_steps, args.eval_batches = min(args.train_s, 5.0), min(args.max_steps, 8), 2
        args.backends = "sdpa" if args.backends == "sdpa,triton" else args.backends
        torch.set_num_threads(1)
    elif device.type != "cuda":
        print("gpu_train: no CUDA GPU here; use --smoke to check the code path on the CPU", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    record = {"command": "python benchmarks/gpu_train.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "environment": environment(), "args": vars(args)}
    t0 = time.perf_counter()
    train, val, record["data"] = bpe_data(200_000 if args.smoke else None, args.bpe_vocab)
    record["runs"] = []
    for backend in args.backends.split(","):
        try:
            record["runs"].append(run_backend(backend, args, train, val, device))
        except Exception as error:  # record it and go on with the next backend
            record["runs"].append({"backend": backend, "error": f"{type(error).__name__}: {error}",
                                   "traceback": traceback.format_exc()[-4000:]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record["total_s"] = round(time.perf_counter() - t0, 1)
    record["environment"]["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    if args.smoke:
        out = Path(args.out_dir or tempfile.mkdtemp(prefix="gpu-train-smoke-"))
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / "gpu-train-smoke.json", out / "gpu-train-smoke.md"
    else:
        json_path, md_path = result_path("gpu-train", "json"), result_path("gpu-train", "md")
    json_path.write_text(json.dumps(record, indent=1))
    md_path.write_text(markdown(record))
    print(markdown(record))
    print(f"wrote {json_path} and {md_path} in {record['total_s']} s", file=sys.stderr)
    return 0 if all("error" not in r for r in record["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
