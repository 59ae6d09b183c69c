"""Hidden checks for ps09 `best_pair(counts, vocab)`, against max over (count, vocab[a], vocab[b]) written here
(the rule `mt.train_bpe` documents: the highest count, ties to the lexicographically greater pair of bytes).

One property per check: the highest count; a tie between single bytes; a tie that the ids would break the
other way (merged tokens); a tie that the joined bytes would break the other way. The items are shuffled so that
the right pair is never the first of the tied ones.
"""

import random

from mastering_transformers.grading import check

BYTES = {i: bytes([i]) for i in range(256)}


def _reference(counts, vocab) -> tuple[int, int]:
    pair, _ = max(counts, key=lambda item: (item[1], vocab[item[0][0]], vocab[item[0][1]]))
    return tuple(pair)


def _call(best_pair, counts, vocab) -> tuple[int, int]:
    chosen = best_pair(counts, vocab)
    assert isinstance(chosen, (tuple, list)) and len(chosen) == 2 and all(type(x) is int for x in chosen), (
        f"best_pair must return the pair (a, b) as a tuple of two ints; got {chosen!r:.60}"
    )
    return tuple(chosen)


def _spell(pair, vocab) -> str:
    return f"{pair} = ({vocab[pair[0]]!r}, {vocab[pair[1]]!r})"


def _shuffled(rng: random.Random, counts, answer) -> list:
    """``counts`` in random order, with some other pair of the top count before the answer (if there is one)."""
    counts = list(counts)
    rng.shuffle(counts)
    top = max(n for _, n in counts)
    rivals = [i for i, (p, n) in enumerate(counts) if n == top and p != answer]
    if rivals:
        i = counts.index(next(item for item in counts if item[0] == answer))
        j = rivals[0]
        if j > i:
            counts[i], counts[j] = counts[j], counts[i]
    return counts


def _expect(best_pair, counts, vocab, hint: str) -> None:
    expected = _reference(counts, vocab)
    chosen = _call(best_pair, counts, vocab)
    top = max(n for _, n in counts)
    count_of = {tuple(p): n for p, n in counts}
    assert chosen in count_of, f"best_pair returned {chosen}, which is not one of the pairs in counts"
    assert chosen == expected, (
        f"among {len(counts)} pairs (highest count {top}) the answer is {_spell(expected, vocab)}, counted "
        f"{count_of[expected]} times; you chose {_spell(chosen, vocab)}, counted {count_of[chosen]} times. {hint}"
    )


@check(points=1)
def test_most_frequent(best_pair):
    """chooses the pair with the highest count"""
    rng = random.Random(9201)
    vocab = dict(BYTES)
    for i in range(256, 300):
        vocab[i] = bytes(rng.choice(range(97, 123)) for _ in range(rng.randint(2, 4)))
    hint = "The highest count wins; the bytes only break ties."
    for size in (2, 5, 40):
        ids = rng.sample(range(300), 12)
        pairs = list({(rng.choice(ids), rng.choice(ids)) for _ in range(3 * size)})[:size]
        counts = list(zip(pairs, rng.sample(range(1, 1000), len(pairs))))
        counts = _shuffled(rng, counts, _reference(counts, vocab))
        if counts[0][0] == _reference(counts, vocab) and len(counts) > 1:
            counts = counts[1:] + counts[:1]
        _expect(best_pair, counts, vocab, hint)


@check(points=1)
def test_tie_to_greater_pair(best_pair):
    """breaks a tie toward the lexicographically greater pair of bytes"""
    rng = random.Random(9202)
    hint = "Of pairs with the same count, take the one whose (vocab[a], vocab[b]) is greatest."
    for _ in range(5):
        letters = sorted(rng.sample(range(33, 127), 4))
        lo, mid, hi = letters[0], letters[1], letters[3]
        top = rng.randint(5, 50)
        tied = [(lo, hi), (mid, lo), (mid, hi), (lo, mid)]  # answer (mid, hi): same left as (mid, lo), greater right
        counts = [(p, top) for p in tied] + [((hi, hi), top - 1), ((letters[2], lo), rng.randint(1, top - 1))]
        counts = _shuffled(rng, counts, _reference(counts, BYTES))
        _expect(best_pair, counts, BYTES, hint)


@check(points=1)
def test_tie_compares_bytes_not_ids(best_pair):
    """breaks a tie by the tokens' bytes, not by their ids"""
    rng = random.Random(9203)
    hint = "Compare vocab[a], vocab[b] (the bytes), not the ids: an id says when a token was learned, not its spelling."
    for _ in range(5):
        first, second = sorted(rng.sample(range(97, 123), 2))
        vocab = dict(BYTES)
        # a later (greater) id for the token that is spelled smaller
        vocab[256] = bytes([second, rng.randint(97, 122)])
        vocab[257] = bytes([first, rng.randint(97, 122)])
        right = rng.randint(97, 122)
        top = rng.randint(3, 30)
        counts = [((257, right), top), ((256, right), top), ((right, 257), top - 1), ((first, second), top - 2)]
        assert _reference(counts, vocab) == (256, right)
        counts = _shuffled(rng, counts, (256, right))
        _expect(best_pair, counts, vocab, hint)


@check(points=1)
def test_tie_compares_pairs_not_joined_bytes(best_pair):
    """breaks a tie by (left, right) as a pair, not by the two tokens joined"""
    rng = random.Random(9204)
    hint = "Compare the pair (vocab[a], vocab[b]): left tokens first, right tokens only if the left ones are equal."
    for _ in range(5):
        a, z = sorted(rng.sample(range(97, 123), 2))
        b = rng.randint(97, z - 1) if z > 97 else 97  # so that a + b + a < a + z
        vocab = dict(BYTES)
        vocab[256] = bytes([a, b])  # (b"ab", b"a") beats (b"a", b"z"), although b"aba" < b"az"
        top = rng.randint(3, 30)
        counts = [((a, z), top), ((256, a), top), ((z, a), top - 1)]
        expected = _reference(counts, vocab)
        assert expected == (256, a) and vocab[a] + vocab[z] > vocab[256] + vocab[a]
        counts = _shuffled(rng, counts, expected)
        _expect(best_pair, counts, vocab, hint)
