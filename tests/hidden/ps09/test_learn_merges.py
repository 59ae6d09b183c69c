"""Hidden checks for ps09 `learn_merges(word_counts, num_merges)`, against a naive BPE trainer written here and,
on random text, against `mt.train_bpe` of chapter 9 as a second reference.

While these checks run, the student's `pair_counts`, `best_pair` and `merge_word` are replaced by the references
in ISOLATE, so a bug in those is not charged a second time here. One property per check: the number of merges
(stopping when no pair is left); the ids 256 + r that later merges use; the weighting by the word counts; UTF-8
bytes as the start; random text.
"""

import random
from collections import Counter

import mastering_transformers as mt
from mastering_transformers.grading import check

BYTES = {i: bytes([i]) for i in range(256)}


def _reference_pair_counts(words):
    counts: dict[tuple[int, int], int] = {}
    for word, n in words:
        word = tuple(word)
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + n
    return list(counts.items())


def _reference_best_pair(counts, vocab):
    if not counts:
        raise ValueError("best_pair was given no pairs: stop when pair_counts returns an empty list")
    pair, _ = max(counts, key=lambda item: (item[1], vocab[item[0][0]], vocab[item[0][1]]))
    return tuple(pair)


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


ISOLATE = {
    "pair_counts": _reference_pair_counts,
    "best_pair": _reference_best_pair,
    "merge_word": _reference_merge_word,
}


def _reference(word_counts: dict[str, int], num_merges: int) -> list[tuple[int, int]]:
    """Naive BPE: recount every pair after every merge."""
    words = {tuple(w.encode("utf-8")): n for w, n in word_counts.items()}
    vocab = dict(BYTES)
    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges:
        counts: dict[tuple[int, int], int] = {}
        for word, n in words.items():
            for i in range(len(word) - 1):
                counts[word[i], word[i + 1]] = counts.get((word[i], word[i + 1]), 0) + n
        if not counts:
            break
        pair = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        new_id = 256 + len(merges)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        words = {_reference_merge_word(w, pair, new_id): n for w, n in words.items()}
        merges.append(pair)
    return merges


def _call(learn_merges, word_counts, num_merges) -> list[tuple[int, int]]:
    merges = learn_merges(dict(word_counts), num_merges)
    assert isinstance(merges, (list, tuple)), (
        f"learn_merges must return a list of (a, b) pairs; got {type(merges).__name__}"
    )
    for m in merges:
        assert isinstance(m, (tuple, list)) and len(m) == 2 and all(type(x) is int for x in m), (
            f"every merge must be a pair (a, b) of int ids; got {m!r:.60}"
        )
    return [tuple(m) for m in merges]


def _show(word_counts, limit: int = 70) -> str:
    text = repr(dict(word_counts))
    return text if len(text) <= limit else text[: limit - 1] + "…}"


def _expect(learn_merges, word_counts, num_merges, hint: str) -> None:
    expected = _reference(word_counts, num_merges)
    got = _call(learn_merges, word_counts, num_merges)
    if got != expected:
        r = next((r for r, (g, e) in enumerate(zip(got, expected)) if g != e), min(len(got), len(expected)))
        where = (f"merge {r} must be {expected[r]}; yours is {got[r]}" if r < min(len(got), len(expected)) else
                 f"expected {len(expected)} merges; got {len(got)}")
        raise AssertionError(f"learn_merges({_show(word_counts)}, {num_merges}): {where}. {hint}")


def _words(rng: random.Random, letters: str, n_words: int, max_count: int) -> dict[str, int]:
    counts = {}
    while len(counts) < n_words:
        counts["".join(rng.choice(letters) for _ in range(rng.randint(1, 6)))] = rng.randint(1, max_count)
    return counts


@check(points=1)
def test_number_of_merges(learn_merges):
    """learns num_merges merges, fewer only when no pair is left"""
    rng = random.Random(9401)
    cases = [({"abcabc": 2, "xyz": 1}, 0), ({"abcabc": 2, "xyz": 1}, 3), ({"abab": 5, "ab": 2}, 10),
             ({"x": 3, "y": 1}, 2), ({"hello": 1, "help": 4}, 30), (_words(rng, "abcdefgh", 12, 9), 6)]
    for word_counts, num_merges in cases:
        expected = len(_reference(word_counts, num_merges))
        got = len(_call(learn_merges, word_counts, num_merges))
        why = ("every word is a single token by then: stop when pair_counts finds no pair" if expected < num_merges
               else "learn exactly num_merges merges while pairs are left")
        assert got == expected, (
            f"learn_merges({_show(word_counts)}, {num_merges}) must return {expected} merges; got {got}: {why}"
        )


@check(points=1)
def test_new_ids(learn_merges):
    """merge r creates id 256 + r, and later merges build on it"""
    rng = random.Random(9402)
    hint = ("Merge r (from 0) creates the id 256 + r; merge it into every word before counting again, so that "
            "later merges can use it.")
    cases = [{"abab": 5}, {"aaaa": 1}, {"abcd": 3}]
    for _ in range(3):
        cases.append({"".join(rng.choice("pqrs") for _ in range(rng.randint(6, 10))): rng.randint(1, 9)})
    for word_counts in cases:
        possible = len(_reference(word_counts, 100))  # every merge the word allows: no early stop needed
        _expect(learn_merges, word_counts, possible, hint)


def _before_first_chain(word_counts: dict[str, int], limit: int) -> int:
    """How many merges the reference learns (at most ``limit``) before one that uses a merged token: checks that
    look at another property ask for only these, so that they do not depend on the ids of merged tokens."""
    merges = _reference(word_counts, limit)
    return next((r for r, (a, b) in enumerate(merges) if a >= 256 or b >= 256), len(merges))


@check(points=1)
def test_weighted_by_count(learn_merges):
    """counts each word as often as it occurs"""
    rng = random.Random(9403)
    hint = "A word that occurs n times adds n to each of its pairs (pass (word, n) items to pair_counts)."
    for _ in range(3):
        x, y, a, b, c = rng.sample("abcdefghijklmnopqrstuvwxyz", 5)
        # weighted, (x, y) comes first; counting every word once, (a, b) would
        cases = [{x + y: rng.randint(10, 30), a + b: 1, a + b + c: 1, c + a + b: 1, y + a + b: 1},
                 {a + b + a + b: 1, c + x: rng.randint(3, 9)}]
        for word_counts in cases:
            _expect(learn_merges, word_counts, _before_first_chain(word_counts, 3), hint)


@check(points=1)
def test_utf8_bytes(learn_merges):
    """starts from the words' UTF-8 bytes"""
    hint = 'Start from tuple(word.encode("utf-8")): "é" is the two bytes 195, 169, and "🙂" four bytes.'
    cases = [{"é!": 1}, {"café": 1, "naïve": 1, "è": 1}, {"🙂🙂": 1, " 🙂": 1}, {"日本": 1, "本日": 1, "€": 1}]
    for word_counts in cases:
        _expect(learn_merges, word_counts, _before_first_chain(word_counts, 6), hint)


def _random_text(rng: random.Random) -> str:
    syllables = [rng.choice("bcdfghlmnprst") + rng.choice("aeiou") + rng.choice(["", "n", "r", "s"])
                 for _ in range(8)]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(25)]
    pieces = []
    for _ in range(rng.randint(60, 120)):
        pieces.append(rng.choice(words) + rng.choice([" ", " ", " ", ", ", ".\n"]))
    return "".join(pieces)


def _spell(merges: list[tuple[int, int]]) -> list[tuple[bytes, bytes]]:
    """The merges as pairs of bytes; a merge that uses an id not created yet fails with a message."""
    vocab, spelled = dict(BYTES), []
    for r, (a, b) in enumerate(merges):
        assert a in vocab and b in vocab, (
            f"merge {r} is {(a, b)}, but only ids 0 to {255 + r} exist before it: merge r creates id 256 + r"
        )
        vocab[256 + r] = vocab[a] + vocab[b]
        spelled.append((vocab[a], vocab[b]))
    return spelled


@check(points=1)
def test_matches_train_bpe(learn_merges):
    """matches mt.train_bpe on the pre-tokens of random text"""
    rng = random.Random(9404)
    for _ in range(2):
        text = _random_text(rng)
        word_counts = dict(Counter(mt.pretokenize(text)))
        num_merges = 12
        _, reference = mt.train_bpe(text, 256 + num_merges)
        assert _spell(_reference(word_counts, num_merges)) == reference  # the two references agree
        spelled = _spell(_call(learn_merges, word_counts, num_merges))
        r = next((r for r, (g, e) in enumerate(zip(spelled, reference)) if g != e), None)
        assert r is None and len(spelled) == len(reference), (
            f"on the {len(word_counts)} distinct pre-tokens of a random text, mt.train_bpe learns "
            + (f"{reference[r]} as merge {r}; yours is {spelled[r]}" if r is not None else
               f"{len(reference)} merges; you return {len(spelled)}")
            + ": count the pairs in every word, weighted, merge the best everywhere, repeat"
        )
