"""The shipped course model (checkpoints/shakespeare_char.pt): it loads, it is small, it was trained on this corpus,
and evaluated with its recorded settings it gives exactly the validation loss recorded in its metadata and in
benchmarks/results/ (so the file, its log and its record cannot drift apart). Chapters 14 and 15 load it.
"""

import json
from pathlib import Path

import pytest
import torch

import mastering_transformers as mt
from mastering_transformers import train as T

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "shakespeare_char.pt"


@pytest.fixture(scope="module")
def shipped():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model, meta = mt.load_checkpoint(CHECKPOINT)
    yield model, meta
    torch.set_num_threads(before)


def record():
    files = sorted((ROOT / "benchmarks" / "results").glob("shakespeare-char-*.json"))
    assert files, "the course model's record benchmarks/results/shakespeare-char-<date>-<hardware>.json is missing"
    return json.loads(files[-1].read_text())


def test_the_checkpoint_is_where_chapters_find_it_and_small():
    assert mt.course_checkpoint() == CHECKPOINT
    assert CHECKPOINT.stat().st_size <= 10 * 2**20  # the design limit: 10 MB
    assert CHECKPOINT.with_suffix(".csv").is_file()


def test_shipped_validation_loss_equals_the_recorded_one(shipped):
    model, meta = shipped
    s = meta["eval_settings"]
    config = meta["config"]
    assert (s["data"], s["val_fraction"]) == ("shakespeare", config.val_fraction)
    data = T.prepare_data(config)
    assert data.sha256 == meta["data_sha256"], "the corpus changed since the model was trained"
    assert meta["vocab"] == data.vocab
    val = mt.evaluate_loss(model, data.val, s["batch_size"], s["block_size"], s["n_batches"], seed=s["seed"],
                           dtype=s["dtype"])
    recorded = meta["final_eval"]["val_loss"]
    assert val == pytest.approx(recorded, rel=2e-6, abs=0)
    rec = record()
    assert rec["final_val_loss"] == pytest.approx(recorded, abs=5e-5)
    assert rec["eval_settings"] == s


def test_metadata_log_and_record_agree(shipped):
    model, meta = shipped
    rows = T.read_log_csv(CHECKPOINT.with_suffix(".csv"))
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(meta["step"]))
    assert rows[-1]["kind"] == "eval" and rows[-1]["val_loss"] == meta["final_eval"]["val_loss"]
    rec = record()
    assert rec["steps"] == meta["step"] and rec["parameters"] == model.num_parameters()
    assert "python -m mastering_transformers.train" in rec["command"] and rec["wall_s"] > 0
    assert rec["hardware"]["cpu_count"] >= 1 and rec["torch"]


def test_shipped_model_knows_the_play_format(shipped):
    model, meta = shipped
    vocab = meta["vocab"]
    capital = torch.tensor([c.isupper() for c in vocab.chars])

    def next_char(prompt):
        with torch.no_grad():
            return torch.softmax(model(torch.tensor([vocab.encode(prompt)]))[0][0, -1], dim=-1)

    assert next_char("my lord.\n\n")[capital].sum() > 0.9  # a speech opens with a speaker's name in capitals
    assert next_char("ROMEO:\n")[capital].sum() > 0.9  # and a verse line with a capital
    assert next_char("KING HENR")[vocab.encode("Y")[0]] > 0.9
    text = mt.generate_text(model, vocab, "ROMEO:\n", 200, temperature=0.8, seed=0)
    assert text.startswith("ROMEO:\n") and len(text) == len("ROMEO:\n") + 200
