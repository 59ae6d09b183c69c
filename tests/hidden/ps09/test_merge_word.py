"""Hidden checks for ps09 `merge_word(word, pair, new_id)`, against a left-to-right scan written here.

One property per check: the return type (a tuple, so that a word can be a dict key); every occurrence of a pair
(a, b) with a != b; overlapping occurrences of (a, a), merged left to right, each token at most once; the edges
(the pair at the start or the end, no occurrence, the pair reversed, words of one token or none).
"""

import random

from mastering_transformers.grading import check


def _reference(word, pair, new_id) -> tuple[int, ...]:
    out, i = [], 0
    while i < len(word):
        if tuple(word[i:i + 2]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _call(merge_word, word, pair, new_id) -> tuple[int, ...]:
    """The answer as a tuple of ints (its type is checked only by test_returns_tuple)."""
    merged = merge_word(word, pair, new_id)
    assert isinstance(merged, (tuple, list)) and all(type(x) is int for x in merged), (
        f"merge_word must return a tuple of int ids; got {merged!r:.60}"
    )
    return tuple(merged)


def _expect(merge_word, word, pair, new_id, hint: str) -> None:
    expected, got = _reference(word, pair, new_id), _call(merge_word, word, pair, new_id)
    assert got == expected, (
        f"merge_word({word}, {pair}, {new_id}) must be {expected}; got {got}. {hint}"
    )


def _word(rng: random.Random, alphabet: list[int], length: int) -> tuple[int, ...]:
    return tuple(rng.choice(alphabet) for _ in range(length))


@check(points=1)
def test_returns_tuple(merge_word):
    """returns a tuple (a word must be usable as a dict key)"""
    rng = random.Random(9301)
    for _ in range(3):
        a, b, c = rng.sample(range(256), 3)
        word = (c, a, b, c, a, b)
        merged = merge_word(word, (a, b), 256 + rng.randint(0, 50))
        assert isinstance(merged, tuple), (
            f"merge_word must return a tuple, not a {type(merged).__name__}: words are keys of a dict in "
            "learn_merges, and a list cannot be a key (return tuple(out))"
        )


@check(points=1)
def test_every_occurrence(merge_word):
    """replaces every occurrence of the pair, not only the first"""
    rng = random.Random(9302)
    hint = "Scan the whole word: every (a, b) becomes new_id, not only the first."
    for _ in range(6):
        a, b, c = rng.sample(range(300), 3)
        word = _word(rng, [a, b, c, a, b], rng.randint(8, 16)) + (a, b, c)
        while sum(1 for p in zip(word, word[1:]) if p == (a, b)) < 2:
            word = (a, b) + word
        _expect(merge_word, word, (a, b), 300 + rng.randint(0, 99), hint)


@check(points=1)
def test_overlapping(merge_word):
    """overlapping occurrences: left to right, each token merged at most once"""
    rng = random.Random(9303)
    hint = "Scanning left to right, a token that went into a merge cannot go into another: (a, a, a) -> (new, a)."
    for run in (3, 4, 5):
        a, c = rng.sample(range(256), 2)
        _expect(merge_word, (a,) * run, (a, a), 256, hint)
        _expect(merge_word, (c,) + (a,) * run + (c,), (a, a), 257, hint)
    for _ in range(4):
        a, c = rng.sample(range(300), 2)
        _expect(merge_word, _word(rng, [a, a, a, c], rng.randint(8, 16)), (a, a), 300 + rng.randint(0, 99), hint)


@check(points=1)
def test_edges(merge_word):
    """the pair at the start or the end, absent, reversed; words of one token or none"""
    rng = random.Random(9304)
    a, b, c, d = rng.sample(range(256), 4)
    cases = [
        ((a, b, c, d), "the pair at the start is merged"),
        ((c, d, a, b), "the pair at the end is merged, and nothing after it is lost"),
        ((a, b), "a word that is just the pair becomes one token"),
        ((c, d, c, a), "a word without the pair comes back unchanged, its last token included"),
        ((b, a, c), "(b, a) is not the pair (a, b): the order within the pair matters"),
        ((a,), "a word of one token has no pair and comes back unchanged"),
        ((), "an empty word stays empty"),
    ]
    for word, hint in cases:
        _expect(merge_word, word, (a, b), 256 + rng.randint(0, 99), hint)
