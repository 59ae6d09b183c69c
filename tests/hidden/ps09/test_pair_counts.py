"""Hidden checks for ps09 `pair_counts(words)`, against a naive count written here.

`words` is a list of (word, n) items, a word being a tuple of token ids; the answer is a list of ((a, b), count)
items, each pair once. One property per check: the pairs of one word (overlapping ones included), the weighting
by n, no pair across two words, random words holding merged ids (>= 256).
"""

import random

from mastering_transformers.grading import check


def _reference(words) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for word, n in words:
        for i in range(len(word) - 1):
            counts[word[i], word[i + 1]] = counts.get((word[i], word[i + 1]), 0) + n
    return counts


def _as_dict(result) -> dict[tuple[int, int], int]:
    """The answer as {pair: count}, after checking its form."""
    assert isinstance(result, (list, tuple)), (
        f"pair_counts must return a list of ((a, b), count) items, e.g. list(counts.items()); "
        f"got {type(result).__name__}"
    )
    out: dict[tuple[int, int], int] = {}
    for item in result:
        well_formed = (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], (tuple, list))
                       and len(item[0]) == 2 and all(type(x) is int for x in item[0]) and type(item[1]) is int)
        assert well_formed, f"every item must be ((a, b), count) with int ids and an int count; got {item!r:.80}"
        pair = tuple(item[0])
        assert pair not in out, (
            f"the pair {pair} appears twice in your result: give each pair one item, with its total count"
        )
        out[pair] = item[1]
    return out


def _show(words, limit: int = 90) -> str:
    text = repr([(tuple(w), n) for w, n in words])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compare(pair_counts, words, hint: str) -> None:
    got, expected = _as_dict(pair_counts(words)), _reference(words)
    for pair in sorted(set(got) | set(expected)):
        g, e = got.get(pair, 0), expected.get(pair, 0)
        assert pair in expected or pair not in got, (
            f"for words {_show(words)} your result lists the pair {pair} (count {g}), which occurs inside no "
            f"word. {hint}"
        )
        assert g == e, f"for words {_show(words)} the pair {pair} must be counted {e} times; you count {g}. {hint}"


def _word(rng: random.Random, alphabet: list[int], length: int) -> tuple[int, ...]:
    return tuple(rng.choice(alphabet) for _ in range(length))


@check(points=1)
def test_one_word(pair_counts):
    """counts every adjacent pair of one word, overlapping ones included"""
    rng = random.Random(9101)
    a, b, c = rng.sample(range(32, 127), 3)
    hint = "Count every position i, the pair (word[i], word[i + 1]), overlapping or repeated ones included."
    cases = [[((a, b, a, b, c), 1)], [((a, a, a), 1)], [((a, a, a, a, b), 1)], [((c,), 1)], []]
    for _ in range(3):
        cases.append([(_word(rng, [a, b, c], rng.randint(6, 14)), 1)])
    for words in cases:
        _compare(pair_counts, words, hint)


@check(points=1)
def test_weighted_by_count(pair_counts):
    """counts a word as often as it occurs (weights by n)"""
    rng = random.Random(9102)
    a, b, c = rng.sample(range(97, 123), 3)
    hint = "A word that occurs n times adds n to the count of each of its pairs, every time it holds the pair."
    cases = [[((a, b, a, b), 7)], [((b, c), 3)], [((a, a, a), 5)]]
    for _ in range(3):
        cases.append([(_word(rng, [a, b, c], rng.randint(4, 10)), rng.randint(2, 40))])
    for words in cases:
        _compare(pair_counts, words, hint)


@check(points=1)
def test_no_pair_across_words(pair_counts):
    """never counts a pair that spans two words"""
    rng = random.Random(9103)
    hint = "Pairs exist only inside a word: the last token of one word and the first of the next are no pair."
    for _ in range(4):
        inner = rng.sample(range(33, 127), 6)
        words, used = [], set()
        for _ in range(rng.randint(2, 5)):
            word = _word(rng, inner, rng.randint(1, 5))
            if word not in used:
                used.add(word)
                words.append((word, 1))
        words.append(((inner[0], inner[1]), 1))
        _compare(pair_counts, words, hint)


@check(points=1)
def test_random_words(pair_counts):
    """matches a reference on random words with merged ids and random counts"""
    rng = random.Random(9104)
    hint = "Sum n over the words for every adjacent pair inside each word."
    for _ in range(4):
        alphabet = rng.sample(range(256), 5) + rng.sample(range(256, 400), 4)
        words = {}
        for _ in range(rng.randint(5, 30)):
            words[_word(rng, alphabet, rng.randint(0, 9))] = rng.randint(1, 50)
        _compare(pair_counts, list(words.items()), hint)
