"""mt.train_bpe and mt.Tokenizer against independent references: a naive BPE trainer and a naive encoder written
here (a full recount of every pair after every merge; every merge applied in order to every word), the
HuggingFace ``tokenizers`` library (GPT-2 file format, encoding, compression), and properties: any Unicode string
round-trips, streaming gives the ids of the whole text, and bad input fails with a clear message.
"""

import itertools
import random
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

import mastering_transformers as mt

# GPT-2's pre-tokenisation pattern, written out again here (it is part of the specification)
PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
SPECIALS = ["<|endoftext|>", "<|end|>", "<|end|><|end|>"]
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)


@pytest.fixture(scope="module")
def corpus():
    return mt.build_corpus()


@pytest.fixture(scope="module")
def sample(corpus):
    """Training text (with special tokens between a few speeches) and held-out text from another part."""
    speeches = corpus[:120_000].split("\n\n")
    train = "".join(s + ("\n\n<|endoftext|>" if i % 7 == 3 else "\n\n") for i, s in enumerate(speeches))
    held_out = corpus[2_000_000:2_030_000]
    return train, held_out


@pytest.fixture(scope="module")
def trained(sample):
    vocab, merges = mt.train_bpe(sample[0], 600, SPECIALS)
    return vocab, merges, mt.Tokenizer(vocab, merges, SPECIALS)


@pytest.fixture(scope="module")
def plain(sample):
    """A tokenizer without special tokens: streaming can then emit every pre-token as soon as it is final."""
    return mt.Tokenizer(*mt.train_bpe(sample[0].replace("<|endoftext|>", ""), 400))


# --- the references -------------------------------------------------------------------------------


def cut_specials(text, specials):
    """[(piece, is_special)] by scanning the text, trying the longest special token first at each position."""
    ordered = sorted(specials, key=len, reverse=True)
    pieces, current, i = [], "", 0
    while i < len(text):
        hit = next((s for s in ordered if text.startswith(s, i)), None)
        if hit:
            pieces += [(current, False), (hit, True)]
            current, i = "", i + len(hit)
        else:
            current, i = current + text[i], i + 1
    return pieces + [(current, False)]


def merge_tokens(tokens, pair):
    out, i = [], 0
    while i < len(tokens):
        if i + 1 < len(tokens) and (tokens[i], tokens[i + 1]) == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return tuple(out)


def naive_train_bpe(text, vocab_size, specials):
    """BPE the slow, obvious way: recount every pair of every word after every merge."""
    words = Counter(w for piece, special in cut_specials(text, specials) if not special for w in PATTERN.findall(piece))
    seqs = Counter()
    for w, c in words.items():
        seqs[tuple(bytes([b]) for b in w.encode("utf-8"))] += c
    vocab = [bytes([b]) for b in range(256)] + [s.encode("utf-8") for s in specials]
    merges = []
    while len(vocab) < vocab_size:
        counts = Counter()
        for seq, c in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] += c
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], p))  # the tie-break: the greater (bytes, bytes) pair
        merges.append(best)
        vocab.append(best[0] + best[1])
        new = Counter()
        for seq, c in seqs.items():
            new[merge_tokens(seq, best)] += c
        seqs = new
    return dict(enumerate(vocab)), merges


def naive_encode(text, vocab, merges, specials):
    """Every merge, in order, applied to every pre-token."""
    special_ids = {s: max(i for i, b in vocab.items() if b == s.encode("utf-8")) for s in specials}
    ids_of = {b: i for i, b in sorted(vocab.items(), reverse=True) if i not in special_ids.values()}
    ids = []
    for piece, special in cut_specials(text, specials):
        if special:
            ids.append(special_ids[piece])
            continue
        for word in PATTERN.findall(piece):
            tokens = tuple(bytes([b]) for b in word.encode("utf-8"))
            for pair in merges:
                tokens = merge_tokens(tokens, pair)
            ids += [ids_of[t] for t in tokens]
    return ids


def hf_byte_level(model):
    tok = HFTokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


# --- training ---------------------------------------------------------------------------------------


def test_train_matches_naive_reference_on_the_corpus(sample):
    text = sample[0][:40_000]
    vocab, merges = mt.train_bpe(text, 256 + 3 + 220, SPECIALS)
    ref_vocab, ref_merges = naive_train_bpe(text, 256 + 3 + 220, SPECIALS)
    assert merges == ref_merges
    assert vocab == ref_vocab


@pytest.mark.parametrize("seed", range(6))
def test_train_matches_naive_reference_on_random_text_full_of_ties(seed):
    rng = random.Random(seed)
    alphabet = ["a", "b", "c", "é", " ", "  ", "\n", "!", "'s", "1", "🙂", "<|end|>"]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(50, 400)))
    specials = ["<|end|>"] if seed % 2 else []
    size = 256 + len(specials) + rng.randint(5, 60)
    assert mt.train_bpe(text, size, specials) == naive_train_bpe(text, size, specials)


def test_ties_go_to_the_lexicographically_greater_pair():
    # every pair occurs once; (b"c", b"d") > (b"a", b"b") > (b" ", b"c")
    assert mt.train_bpe("ab cd", 257)[1] == [(b"c", b"d")]
    # equal first halves: the second half decides, (b"c", b"b") > (b"c", b"a") > (b"a", b"c")
    assert mt.train_bpe("cacb", 257)[1] == [(b"c", b"b")]
    # a more frequent pair beats a greater one
    assert mt.train_bpe("ab ab zz", 257)[1] == [(b"a", b"b")]


def test_vocabulary_layout(trained):
    vocab, merges, _ = trained
    assert len(vocab) == 600 and len(merges) == 600 - 256 - len(SPECIALS)
    assert [vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]
    assert [vocab[256 + k] for k in range(3)] == [s.encode() for s in SPECIALS]
    assert all(vocab[259 + k] == a + b for k, (a, b) in enumerate(merges))


def test_merges_never_cross_pretokens_or_special_tokens():
    text = "x<|s|>y. " * 40 + "the cat sat on the mat. " * 30
    vocab, merges = mt.train_bpe(text, 340, ["<|s|>"])
    pieces = [piece for piece, special in cut_specials(text, ["<|s|>"]) if not special]
    pretokens = {w.encode() for piece in pieces for w in PATTERN.findall(piece)}
    for token in (vocab[i] for i in range(257, len(vocab))):  # the merged tokens
        assert any(token in w for w in pretokens), token  # every token lies inside one pre-token
        assert b"<" not in token and b"|" not in token       # nothing of the special token is learned
    assert (b"e", b" ") not in merges and (b".", b" ") not in merges  # a word never merges with the next space


def test_a_smaller_vocabulary_is_a_prefix_of_a_larger_one(sample):
    _, small = mt.train_bpe(sample[0], 300)
    _, large = mt.train_bpe(sample[0], 500)
    assert large[: len(small)] == small


def test_training_stops_when_nothing_is_left_to_merge():
    vocab, merges = mt.train_bpe("aaa aaa", 1000)
    assert merges == [(b"a", b"a"), (b"aa", b"a"), (b" ", b"aaa")]
    assert len(vocab) == 259


# --- encoding -------------------------------------------------------------------------------------


def test_encode_matches_naive_encoder_on_held_out_text(trained, sample):
    vocab, merges, tok = trained
    text = sample[1][:8000] + "<|endoftext|>" + sample[1][8000:12000]
    assert tok.encode(text) == naive_encode(text, vocab, merges, SPECIALS)


@given(st.lists(st.sampled_from(["ab", "a", "b", " ", "  ", "é", "\n", "ba", "<|end|>"]), max_size=30).map("".join))
@PROPERTY
def test_encode_matches_naive_encoder_on_random_text(text):
    vocab, merges = mt.train_bpe("ab ab abab aab bab ba é é  \n\n " * 3, 256 + 1 + 12, ["<|end|>"])
    tok = mt.Tokenizer(vocab, merges, ["<|end|>"])
    assert tok.encode(text) == naive_encode(text, vocab, merges, ["<|end|>"])


def test_overlapping_special_tokens_longest_match_wins(trained):
    *_, tok = trained
    end, end2, eot = (tok.encode(s) for s in ["<|end|>", "<|end|><|end|>", "<|endoftext|>"])
    assert all(len(ids) == 1 for ids in (end, end2, eot))  # never split
    assert len({end[0], end2[0], eot[0]}) == 3
    ids = tok.encode("hi<|end|><|end|><|end|>!")
    assert ids == tok.encode("hi") + end2 + end + tok.encode("!")
    assert tok.encode("<|end|") != end and tok.decode(tok.encode("<|end|")) == "<|end|"  # a near miss is text


UNICODE_PIECES = [
    "<|endoftext|>", "<|end|>", "<|end|><|end|>", "<|end|", "🙂", "👩\u200d👩\u200d👧", "🇫🇷",
    "e\u0301", "\u0301\u0302", "日本語の文", "한국어", "Ελληνικά",
    "   ", "\n\n\n", "\t", " \n ", "\r\n", "\u00a0", "\u2028", "\ufeff", "\x00",
    "'s", "'ll", "don't", " 123", "\U0010ffff", "\uffff", "Ω≈ç√",
]
unicode_text = st.lists(
    st.one_of(st.text(st.characters(codec="utf-8"), max_size=6), st.sampled_from(UNICODE_PIECES)), max_size=14
).map("".join)


@given(unicode_text)
@PROPERTY
def test_any_unicode_string_round_trips(trained, text):
    *_, tok = trained
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(i in tok.vocab for i in ids)


@given(unicode_text, st.data())
@PROPERTY
def test_encode_iterable_gives_the_ids_of_the_whole_text(trained, plain, text, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    for tok in (trained[2], plain):
        assert list(tok.encode_iterable(chunks)) == tok.encode(text)


@pytest.mark.parametrize("which", ["trained", "plain"])
def test_encode_iterable_by_character_and_by_line(which, request, sample):
    tok = request.getfixturevalue(which)
    tok = tok[2] if which == "trained" else tok
    text = sample[1][:3000] + "  \n\n   <|end|><|end|><|end|x<|endoftext|>'re  \n\n\n\nA\n \n  \n"
    assert list(tok.encode_iterable(iter(text))) == tok.encode(text)
    lines = text.splitlines(keepends=True)
    assert list(tok.encode_iterable(lines)) == tok.encode(text)
    # a chunk that ends inside a run of newlines: "\n\nC" is "\n", "\n", "C", although "\n\n" alone is one piece
    chunks = ["more.\n\n" + "x" * 20, "\nCARDINAL"]
    assert list(tok.encode_iterable(chunks)) == tok.encode("".join(chunks))
    assert list(tok.encode_iterable(["a" * 30 + ".\n\n", "CARDINAL"])) == tok.encode("a" * 30 + ".\n\nCARDINAL")


def test_encode_iterable_waits_for_a_contraction_to_complete():
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"'r", 257: b"'re"}
    tok = mt.Tokenizer(vocab, [(b"'", b"r"), (b"'r", b"e")])
    assert tok.encode("they're here") == [*b"they", 257, *b" here"]
    # "'r" at the end of a chunk is not final: an "e" in the next chunk makes the pre-token "'re"
    assert list(tok.encode_iterable(["they'r", "e here"])) == tok.encode("they're here")
    assert list(tok.encode_iterable(["they'r", "e here", " " * 20])) == tok.encode("they're here" + " " * 20)


def test_encode_iterable_streams(trained, corpus):
    *_, tok = trained
    consumed = 0

    def endless_lines():  # a "file" far too long to hold: the corpus, over and over
        nonlocal consumed
        for line in itertools.cycle(corpus.splitlines(keepends=True)):
            consumed += 1
            yield line

    first = list(itertools.islice(tok.encode_iterable(endless_lines()), 200))
    assert first == tok.encode(corpus[:2000])[:200]
    assert consumed < 60  # it read a few lines, not the whole stream


def test_decode_of_a_cut_character_gives_the_replacement_character(trained):
    *_, tok = trained
    ids = tok.encode("🙂")
    assert len(ids) == 4  # four bytes, never merged in Shakespeare
    assert tok.decode(ids[:2]) == "\ufffd" and tok.decode(ids[1:]) == "\ufffd" * 3
    assert tok.decode(ids[:2] + tok.encode("a")) == "\ufffda"
    for start in range(4):
        for stop in range(start, 5):
            tok.decode(ids[start:stop])  # never raises
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.decode([0, 10**6])


# --- GPT-2 files and the tokenizers library ---------------------------------------------------------


def test_bytes_to_unicode_matches_gpt2_as_tokenizers_implements_it():
    mapping = mt.bytes_to_unicode()
    assert sorted(mapping) == list(range(256)) and len(set(mapping.values())) == 256
    assert set(mapping.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert mapping[ord(" ")] == "Ġ" and mapping[ord("\n")] == "Ċ"
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    for text in [chr(b) for b in range(128)] + ["é", "ß", "日", "🙂", "\u0301", "\U0010ffff"]:
        (theirs, _), = byte_level.pre_tokenize_str(text)
        assert "".join(mapping[b] for b in text.encode("utf-8")) == theirs, repr(text)


def test_save_and_from_files_round_trip(trained, sample, tmp_path):
    vocab, merges, tok = trained
    paths = tok.save(tmp_path)
    assert [p.name for p in paths] == ["vocab.json", "merges.txt"]
    again = mt.Tokenizer.from_files(*paths, special_tokens=SPECIALS)
    assert again.vocab == vocab and again.merges == merges
    text = sample[1][:5000] + "<|end|><|end|>🙂"
    assert again.encode(text) == tok.encode(text)
    prefixed = tok.save(tmp_path / "shakespeare")
    assert [p.name for p in prefixed] == ["shakespeare-vocab.json", "shakespeare-merges.txt"]
    assert mt.Tokenizer.from_files(*prefixed, special_tokens=SPECIALS).vocab == vocab


def test_saved_files_load_in_tokenizers_and_encode_the_same(trained, sample, tmp_path):
    *_, tok = trained
    vocab_path, merges_path = tok.save(tmp_path)
    hf = hf_byte_level(models.BPE.from_file(str(vocab_path), str(merges_path)))
    text = sample[1] + " ünïcödé 日本語 🙂 e\u0301"
    assert hf.encode(text).ids == tok.encode(text)
    assert hf.decode(tok.encode(text)) == text


def test_files_written_by_tokenizers_load_and_encode_the_same(sample, tmp_path):
    hf = hf_byte_level(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([sample[0]], trainer=trainer)
    hf.model.save(str(tmp_path))
    ours = mt.Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", ["<|endoftext|>"])
    assert ours.vocab_size == hf.get_vocab_size() == 500
    text = sample[1] + " 日本語 🙂"
    assert ours.encode(text) == hf.encode(text).ids


def test_compression_close_to_tokenizers(sample):
    train, held_out = sample
    vocab, merges = mt.train_bpe(train, 800, ["<|endoftext|>"])
    ours = mt.Tokenizer(vocab, merges, ["<|endoftext|>"])
    hf = hf_byte_level(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([train], trainer=trainer)
    n_bytes = len(held_out.encode("utf-8"))
    ours_bpt, theirs_bpt = n_bytes / len(ours.encode(held_out)), n_bytes / len(hf.encode(held_out).ids)
    assert ours_bpt > 2.0
    assert abs(ours_bpt / theirs_bpt - 1) < 0.02, (ours_bpt, theirs_bpt)


# --- errors ---------------------------------------------------------------------------------------


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"at least 256 .* \+ 2 special tokens = 258; got 257"):
        mt.train_bpe("hello", 257, ["<a>", "<b>"])
    with pytest.raises(TypeError, match="text must be a str; got bytes"):
        mt.train_bpe(b"hello", 300)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        mt.train_bpe("hello", 300.0)
    with pytest.raises(TypeError, match="list of strings, not one string"):
        mt.train_bpe("hello", 300, "<|endoftext|>")
    with pytest.raises(ValueError, match="non-empty str"):
        mt.train_bpe("hello", 300, [""])
    with pytest.raises(ValueError, match="distinct"):
        mt.train_bpe("hello", 300, ["<a>", "<a>"])
    with pytest.raises(ValueError, match="every single byte"):
        mt.Tokenizer({i: bytes([i]) for i in range(255)}, [])
    with pytest.raises(ValueError, match=r"merge 0 .* not in the vocabulary"):
        mt.Tokenizer({i: bytes([i]) for i in range(256)}, [(b"a", b"b")])
    tok = mt.Tokenizer({i: bytes([i]) for i in range(256)}, [])
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(None)
    with pytest.raises(TypeError, match="text must be a str"):
        list(tok.encode_iterable([b"bytes"]))
