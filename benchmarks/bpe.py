"""Byte-level BPE: mt.train_bpe against the HuggingFace ``tokenizers`` library on the course corpus.

    .venv/bin/python benchmarks/bpe.py [--repeats 3] [--vocab-size 2000]

1. Training time: a vocabulary of 2,000 tokens (256 bytes, one special token, 1,743 merges) learned from the whole
   corpus (``mt.build_corpus()``), by ``mt.train_bpe`` (pure Python, one thread) and by ``tokenizers``' BPE
   trainer (Rust) with the same byte-level pre-tokeniser, once on one thread and once on every core.
2. Compression: both trained on the first 90 % of the corpus, then bytes per token and token count on the last
   10 % (the held-out split of ``mt.train_val_split``); how many of the merges agree; encoding speed.

Writes benchmarks/results/bpe-<date>-<hardware>.json and .md. The issue asks for <= 60 s of training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import __version__ as tokenizers_version
from tokenizers import decoders, models, pre_tokenizers, trainers

import mastering_transformers as mt
from common import environment, result_path

ROOT = Path(__file__).resolve().parents[1]
SPECIAL = "<|endoftext|>"


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def cpu_timed(fn, *args):
    """Wall and CPU seconds of this process (all its threads): CPU time hardly depends on other work."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return {"wall": round(time.perf_counter() - wall, 2), "cpu": round(time.process_time() - cpu, 2)}


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


def pair_counts_after(text: str, merges: list[tuple[bytes, bytes]]) -> Counter:
    """Pair counts after applying ``merges`` to every pre-token: the naive way, to check a tie independently."""
    counts: Counter = Counter()
    for word, n in Counter(mt.pretokenize(text, [SPECIAL])).items():
        tokens = [bytes([b]) for b in word.encode("utf-8")]
        for a, b in merges:
            i = 0
            while i < len(tokens) - 1:
                if tokens[i] == a and tokens[i + 1] == b:
                    tokens[i:i + 2] = [a + b]
                i += 1
        for pair in zip(tokens, tokens[1:]):
            counts[pair] += n
    return counts


def train_ours(text: str, vocab_size: int) -> mt.Tokenizer:
    vocab, merges = mt.train_bpe(text, vocab_size, [SPECIAL])
    return mt.Tokenizer(vocab, merges, [SPECIAL])


def train_hf(text: str, vocab_size: int, parallel: bool) -> HFTokenizer:
    # tokenizers reads TOKENIZERS_PARALLELISM when it starts parallel work, so it can be switched per run
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's regex
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def hf_merges(tok: HFTokenizer) -> list[tuple[bytes, bytes]]:
    decoder = {c: b for b, c in mt.bytes_to_unicode().items()}
    state = json.loads(tok.to_str())["model"]["merges"]
    pairs = [m.split(" ") if isinstance(m, str) else m for m in state]
    return [(bytes(decoder[c] for c in a), bytes(decoder[c] for c in b)) for a, b in pairs]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=2000)
    args = parser.parse_args(argv)
    env = environment()
    text = mt.build_corpus()
    n_train = int(len(text) * 0.9)  # the split mt.train_val_split makes
    train, held_out = text[:n_train], text[n_train:]
    n_bytes = len(held_out.encode("utf-8"))

    # 1. Training time on the whole corpus.
    words = Counter(mt.pretokenize(text))
    pretok_t = cpu_timed(mt.pretokenize, text)
    ours_t = [cpu_timed(train_ours, text, args.vocab_size) for _ in range(args.repeats)]
    hf_1_t = [cpu_timed(train_hf, text, args.vocab_size, False) for _ in range(args.repeats)]
    hf_all_t = [cpu_timed(train_hf, text, args.vocab_size, True) for _ in range(args.repeats)]

    # 2. Compression on held-out text, both trained on the training split.
    ours = train_ours(train, args.vocab_size)
    hf = train_hf(train, args.vocab_size, True)
    assert ours.vocab_size == hf.get_vocab_size() == args.vocab_size
    ours_enc_s, ours_ids = timed(ours.encode, held_out)  # a fresh tokenizer: its pre-token cache starts empty
    hf_enc_s, hf_enc = timed(hf.encode, held_out)
    assert ours.decode(ours_ids) == held_out and hf.decode(hf_enc.ids) == held_out
    ours_m, theirs_m = ours.merges, hf_merges(hf)
    same_prefix = next((i for i, (a, b) in enumerate(zip(ours_m, theirs_m)) if a != b), len(ours_m))
    first_difference = None
    if same_prefix < len(ours_m):
        counts = pair_counts_after(train, ours_m[:same_prefix])
        ours_pair, their_pair = ours_m[same_prefix], theirs_m[same_prefix]
        first_difference = {"merge": same_prefix + 1,
                            "mt": [t.decode("utf-8", "replace") for t in ours_pair],
                            "tokenizers": [t.decode("utf-8", "replace") for t in their_pair],
                            "count_mt_pair": counts[ours_pair], "count_tokenizers_pair": counts[their_pair]}

    record = {
        "what": "byte-level BPE: mt.train_bpe vs HuggingFace tokenizers, training time and held-out compression",
        "command": "python benchmarks/bpe.py " + " ".join(argv),
        **env,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "tokenizers": tokenizers_version,
        "corpus": {"characters": len(text), "bytes": len(text.encode("utf-8")), "pretokens": sum(words.values()),
                   "distinct_pretokens": len(words), "sha256": mt.data.corpus_sha256(text)},
        "vocab_size": args.vocab_size,
        "special_tokens": [SPECIAL],
        "training_whole_corpus_seconds": {
            "pretokenize_only": pretok_t,
            "mt.train_bpe (Python, 1 thread)": ours_t,
            "tokenizers (Rust, 1 thread)": hf_1_t,
            f"tokenizers (Rust, {os.cpu_count()} threads)": hf_all_t,
        },
        "training_median_seconds": {  # wall time
            "mt.train_bpe": median_of(ours_t, "wall"),
            "tokenizers_1_thread": median_of(hf_1_t, "wall"),
            "tokenizers_all_threads": median_of(hf_all_t, "wall"),
        },
        "training_median_cpu_seconds": {
            "mt.train_bpe": median_of(ours_t, "cpu"),
            "tokenizers_1_thread": median_of(hf_1_t, "cpu"),
            "tokenizers_all_threads": median_of(hf_all_t, "cpu"),
        },
        "held_out": {
            "train_characters": len(train), "held_out_bytes": n_bytes,
            "mt_tokens": len(ours_ids), "tokenizers_tokens": len(hf_enc.ids),
            "mt_bytes_per_token": round(n_bytes / len(ours_ids), 4),
            "tokenizers_bytes_per_token": round(n_bytes / len(hf_enc.ids), 4),
            "mt_encode_seconds": round(ours_enc_s, 3), "tokenizers_encode_seconds": round(hf_enc_s, 3),
        },
        "merges": {"count": len(ours_m), "identical_leading_merges": same_prefix,
                   "in_both_lists": len(set(ours_m) & set(theirs_m)), "first_difference": first_difference},
    }
    record["meets_60_s_goal"] = record["training_median_seconds"]["mt.train_bpe"] <= 60
    out = result_path("bpe", "json")
    out.write_text(json.dumps(record, indent=2) + "\n")

    med, cpu, ho = record["training_median_seconds"], record["training_median_cpu_seconds"], record["held_out"]
    d = first_difference
    tie_sentence = "" if d is None else (
        f"At merge {d['merge']} `mt` takes {d['mt']} and `tokenizers` {d['tokenizers']}, pairs that occur "
        f"{d['count_mt_pair']} and {d['count_tokenizers_pair']} times at that point (counted again from scratch): "
        + ("a tie, which the two trainers break differently." if d['count_mt_pair'] == d['count_tokenizers_pair']
           else "not a tie.")
    )
    md = f"""# Byte-level BPE on the course corpus ({env['date']})

`{record['command']}` on {env['hardware']['cpu']} ({env['hardware']['cpu_count']} cores), Python {env['python']},
tokenizers {tokenizers_version}, commit `{env['commit']}`. Load average (1 min) {env['load_average_1min_at_start']} at
the start and {record['load_average_1min_at_end']} at the end: other work shared the machine, so wall times are upper bounds.

Training a {args.vocab_size}-token vocabulary (256 bytes, `{SPECIAL}`, {len(ours_m)} merges) on the whole corpus
({len(text):,} characters, {len(words):,} distinct pre-tokens), median of {args.repeats}:

| trainer | wall time (s) | CPU time (s) |
|---|---|---|
| `mt.train_bpe` (Python, one thread) | {med['mt.train_bpe']} | {cpu['mt.train_bpe']} |
| pre-tokenising alone (`mt.pretokenize`, part of the line above) | {pretok_t['wall']} | {pretok_t['cpu']} |
| `tokenizers` BPE trainer, one thread | {med['tokenizers_1_thread']} | {cpu['tokenizers_1_thread']} |
| `tokenizers` BPE trainer, {os.cpu_count()} threads | {med['tokenizers_all_threads']} | {cpu['tokenizers_all_threads']} |

Goal (issue 10): at most 60 s for `mt.train_bpe`: {'met' if record['meets_60_s_goal'] else 'NOT met'}.

Trained on the first 90 % and measured on the last 10 % ({n_bytes:,} bytes):

| | tokens | bytes per token | encode (s) |
|---|---|---|---|
| `mt.Tokenizer` | {ho['mt_tokens']:,} | {ho['mt_bytes_per_token']} | {ho['mt_encode_seconds']} |
| `tokenizers` | {ho['tokenizers_tokens']:,} | {ho['tokenizers_bytes_per_token']} | {ho['tokenizers_encode_seconds']} |

The first {same_prefix} merges are identical; {record['merges']['in_both_lists']} of {len(ours_m)} merges are in both
lists. {tie_sentence}
"""
    result_path("bpe", "md").write_text(md)
    print(md, f"\nwritten to {out.relative_to(ROOT)} and .md")


if __name__ == "__main__":
    main(sys.argv[1:])
