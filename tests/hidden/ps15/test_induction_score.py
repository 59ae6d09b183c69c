"""Hidden checks for ps15 `induction_score(weights, period)`, against a loop over the queries i = P .. T-1 written here.

One property per check: the shape; the values on random weights with random periods (P = 1 and P = T-1 included);
the target key i - P + 1 (a perfect induction head scores 1, a duplicate-token head, on key i - P, scores 0); only
the queries of the second copy count (weight that a query i < P puts anywhere must not change the score).
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, max_error


def _weights(seed: int, lead: tuple, t: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = 2 * torch.randn(*lead, t, t, generator=g, dtype=torch.float64)
    scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, -1)


def _reference(w: torch.Tensor, p: int) -> torch.Tensor:
    t = w.shape[-1]
    return sum(w[..., i, i - p + 1] for i in range(p, t)) / (t - p)


def _one_hot_rows(t: int, key_of_row) -> torch.Tensor:
    w = torch.zeros(t, t, dtype=torch.float64)
    for i in range(t):
        w[i, key_of_row(i)] = 1.0
    return w


@check(points=1)
def test_shape(induction_score):
    """shape: (..., T, T), P -> (...), size-1 dims kept"""
    for seed, lead, t, p in [(15301, (), 8, 4), (15302, (2, 3), 10, 3), (15303, (1, 2, 1), 6, 5), (15304, (4,), 2, 1)]:
        w = _weights(seed, lead, t)
        expect_tensor(induction_score(w, p), f"induction_score of weights {tuple(w.shape)} with period {p}", lead)


@check(points=1)
def test_values(induction_score):
    """values: random weights and periods, P = 1 and P = T-1 included"""
    for seed, lead, t, p in [(15401, (3,), 12, 5), (15402, (2, 2), 9, 1), (15403, (), 7, 6), (15404, (2,), 20, 10)]:
        w = _weights(seed, lead, t)
        error = max_error(induction_score(w, p), _reference(w, p), "the score")
        assert error < 1e-8, (
            f"for weights {tuple(w.shape)} and period {p} the score must be the mean of A[i, i-P+1] over the "
            f"queries i = P .. T-1; largest error {error:.3g}"
        )


@check(points=1)
def test_target_key(induction_score):
    """target: key i-P+1 (the token after the earlier copy), not i-P"""
    for t, p in [(8, 4), (11, 3), (6, 2)]:
        perfect = _one_hot_rows(t, lambda i: max(i - p + 1, 0))
        got = float(expect_tensor(induction_score(perfect, p), "the score of one (T, T) matrix", ()))
        assert abs(got - 1.0) < 1e-9, (
            f"a head whose queries i >= P put all their weight on key i - P + 1 (the token after the earlier copy "
            f"of the current one) must score 1 (T={t}, P={p}); got {got:.6g}"
        )
        duplicate = _one_hot_rows(t, lambda i: i - p if i >= p else i)
        got = float(induction_score(duplicate, p))
        assert abs(got) < 1e-9, (
            f"a head whose queries i >= P look at key i - P, the earlier copy of the current token itself, is a "
            f"duplicate-token head and must score 0 (T={t}, P={p}); got {got:.6g}"
        )


@check(points=1)
def test_second_copy_only(induction_score):
    """only the queries i >= P count"""
    for seed, t, p in [(15501, 10, 4), (15502, 9, 2), (15503, 14, 7)]:
        w = _weights(seed, (2,), t)
        w[..., :p, :] = 0.0
        w[..., :p, 0] = 1.0  # queries before P: all weight on key 0 (query P-1's would-be target)
        error = max_error(induction_score(w, p), _reference(w, p), "the score")
        assert error < 1e-8, (
            f"queries i < P = {p} have no earlier copy and must not count: average over the T - P = {t - p} "
            f"queries i = P .. T-1 only (T={t}); largest error {error:.3g}"
        )
