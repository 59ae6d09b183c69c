"""Hidden checks for ps09 `encode_word(word_bytes, merges)`, against a naive encoder written here (the
earliest-learned applicable merge, again and again) and, on random words, against `mt.Tokenizer` of chapter 9.

While these checks run, the student's `merge_word` is replaced by the reference in ISOLATE, so a bug in it is not
charged a second time here. One property per check: the bytes when no merge applies (and the list type); merges
applied until none applies; the earliest-learned merge first, where the latest or the most frequent would cut
the word differently; random words under merges learned from random text.
"""

import random
from collections import Counter

import mastering_transformers as mt
from mastering_transformers.grading import check

BYTES = {i: bytes([i]) for i in range(256)}


def _reference_merge_word(word, pair, new_id):
    out, i, pair = [], 0, tuple(pair)
    while i < len(word):
        if tuple(word[i:i + 2]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


ISOLATE = {"merge_word": _reference_merge_word}


def _reference(word_bytes: bytes, merges) -> list[int]:
    ranks = {tuple(p): r for r, p in reversed(list(enumerate(merges)))}
    ids = list(word_bytes)
    while True:
        candidates = [(ranks[p], p) for p in zip(ids, ids[1:]) if p in ranks]
        if not candidates:
            return ids
        rank, pair = min(candidates)
        ids = list(_reference_merge_word(ids, pair, 256 + rank))


def _learn(word_counts: dict[bytes, int], num_merges: int) -> list[tuple[int, int]]:
    """Merges learned from {word bytes: count} (naive BPE, ties to the greater pair of bytes)."""
    words = {tuple(w): n for w, n in word_counts.items()}
    vocab, merges = dict(BYTES), []
    while len(merges) < num_merges:
        counts = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        if not counts:
            break
        pair = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        vocab[256 + len(merges)] = vocab[pair[0]] + vocab[pair[1]]
        words = {_reference_merge_word(w, pair, 256 + len(merges)): n for w, n in words.items()}
        merges.append(pair)
    return merges


def _call(encode_word, word_bytes, merges) -> list[int]:
    """The answer as a list of ints (its type is checked only by test_no_merge_applies)."""
    ids = encode_word(word_bytes, merges)
    assert isinstance(ids, (list, tuple)) and all(type(i) is int for i in ids), (
        f"encode_word must return a list of int ids; got {ids!r:.60}"
    )
    return list(ids)


def _show(merges, limit: int = 70) -> str:
    text = repr(list(merges))
    return text if len(text) <= limit else text[: limit - 1] + "…]"


def _expect(encode_word, word_bytes, merges, hint: str) -> None:
    expected, got = _reference(word_bytes, merges), _call(encode_word, word_bytes, merges)
    assert got == expected, (
        f"encode_word({word_bytes!r}, {_show(merges)}) must be {expected}; got {got}. {hint}"
    )


@check(points=1)
def test_no_merge_applies(encode_word):
    """no merge applies: the word's bytes, as a list of ints"""
    rng = random.Random(9501)
    merges = [(120, 121), (256, 122), (113, 113)]  # "xy", "xyz", "qq"
    words = [b"hello", b"", b"a", "café 🙂".encode(), bytes(rng.sample(range(97, 110), 6)), b"yx zx q"]
    for word in words:
        for m in ([], merges):
            ids = encode_word(word, m)
            assert isinstance(ids, list), f"encode_word must return a list of ints, not a {type(ids).__name__}"
            assert ids == list(word), (
                f"no merge of {_show(m)} applies to {word!r}: the ids are its bytes, {list(word)}; got {ids}"
            )


@check(points=1)
def test_until_none_applies(encode_word):
    """applies merges again and again until none applies"""
    rng = random.Random(9502)
    hint = "Keep merging while any pair of the word is a merge; a word of two tokens can still become one."
    cases = [(b"ab", [(97, 98)]), (b"aaaa", [(97, 97), (256, 256)]), (b"abab", [(97, 98), (256, 256)])]
    for _ in range(4):
        word = bytes(rng.choice(b"lmno") for _ in range(rng.randint(4, 9)))
        cases.append((word, _learn({word: 1}, 20)))  # the word's own merges make it one token
    for word, merges in cases:
        _expect(encode_word, word, merges, hint)


@check(points=2)
def test_earliest_merge_first(encode_word):
    """applies the earliest-learned merge first (not the latest, not the most frequent pair)"""
    rng = random.Random(9503)
    hint = ("Among the pairs present, merge the one learned earliest (lowest index in merges), then look again; "
            "not the latest merge, not the pair most frequent in the word.")
    for _ in range(3):
        a, b, c = rng.sample(range(97, 123), 3)
        cases = [
            # (a, b) before (b, c): abcbc -> [ab, c, bc]; latest-first or most-frequent-first gives [a, bc, bc]
            (bytes([a, b, c, b, c]), [(a, b), (b, c)]),
            # (b, c) before (a, b): abc -> [a, bc]; latest-first (or the longest token) gives [abc]
            (bytes([a, b, c]), [(b, c), (a, b), (257, c)]),
            # a later merge builds on an earlier one: (b, c), then (a, 256)
            (bytes([a, b, c, a, b, c, b, c]), [(b, c), (a, b), (a, 256)]),
        ]
        for word, merges in cases:
            _expect(encode_word, word, merges, hint)


def _random_text(rng: random.Random) -> str:
    syllables = [rng.choice("bcdfghlmnprst") + rng.choice("aeiou") + rng.choice(["", "n", "r", "s"])
                 for _ in range(10)]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(40)]
    return "".join(rng.choice(words) + rng.choice([" ", " ", " ", ", ", ".\n"]) for _ in range(150))


@check(points=1)
def test_matches_tokenizer(encode_word):
    """matches mt.Tokenizer on random words, under merges learned from random text"""
    rng = random.Random(9504)
    text = _random_text(rng)
    vocab, merges_bytes = mt.train_bpe(text, 256 + 40)
    tokenizer = mt.Tokenizer(vocab, merges_bytes)
    merges = _learn(Counter(w.encode() for w in mt.pretokenize(text)), 40)
    assert [(vocab[a], vocab[b]) for a, b in merges] == merges_bytes  # the two references agree
    seen = sorted(set(mt.pretokenize(text)))
    unseen = sorted(set(mt.pretokenize(_random_text(rng))) - set(seen))
    words = rng.sample(seen, 8) + rng.sample(unseen, min(8, len(unseen)))
    for word in words:
        expected = tokenizer.encode(word)
        assert expected == _reference(word.encode(), merges)  # the two references agree
        got = _call(encode_word, word.encode(), merges)
        assert got == expected, (
            f"under the 40 merges learned from a random text, mt.Tokenizer encodes {word!r} as {expected}; "
            f"you give {got}. Start from the bytes and apply the earliest-learned merge present, until none is"
        )
