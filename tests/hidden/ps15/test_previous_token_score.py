"""Hidden checks for ps15 `previous_token_score(weights)`, against a loop over the queries written here and the closed
forms of a pure previous-token head (score 1) and a uniform causal head (mean of 1/(i+1) over i = 1 .. T-1).

One property per check: the shape (leading dims, size-1 ones included, pass through; a single matrix gives a 0-dim
tensor), the values on random causal weights, the closed forms.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, max_error


def _weights(seed: int, lead: tuple, t: int) -> torch.Tensor:
    """Random causal attention weights (..., T, T) in float64: softmax of random scores, future masked."""
    g = torch.Generator().manual_seed(seed)
    scores = 2 * torch.randn(*lead, t, t, generator=g, dtype=torch.float64)
    scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, -1)


def _reference(w: torch.Tensor) -> torch.Tensor:
    t = w.shape[-1]
    return sum(w[..., i, i - 1] for i in range(1, t)) / (t - 1)


@check(points=1)
def test_shape(previous_token_score):
    """shape: (..., T, T) -> (...), size-1 dims kept"""
    for seed, lead, t in [(15101, (), 5), (15102, (2, 3), 7), (15103, (1, 4, 1), 2), (15104, (3,), 11)]:
        w = _weights(seed, lead, t)
        expect_tensor(previous_token_score(w), f"previous_token_score of weights {tuple(w.shape)}", lead)


@check(points=1)
def test_values(previous_token_score):
    """values: mean over queries 1..T-1 of the weight on key i-1"""
    for seed, lead, t in [(15201, (4,), 6), (15202, (2, 2), 13), (15203, (), 3)]:
        w = _weights(seed, lead, t)
        error = max_error(previous_token_score(w), _reference(w), "the score")
        assert error < 1e-8, (
            f"for weights of shape {tuple(w.shape)} the score must be the mean of A[i, i-1] over the T-1 queries "
            f"i = 1 .. T-1 (the entries just below the diagonal); largest error {error:.3g}"
        )


@check(points=1)
def test_closed_forms(previous_token_score):
    """closed forms: a pure previous-token head scores 1, a uniform causal head mean(1/(i+1))"""
    for t in (2, 6, 17):
        pure = torch.zeros(t, t, dtype=torch.float64)
        pure[0, 0] = 1.0
        pure[torch.arange(1, t), torch.arange(t - 1)] = 1.0
        got = float(expect_tensor(previous_token_score(pure), "the score of one (T, T) matrix", ()))
        assert abs(got - 1.0) < 1e-9, (
            f"a head whose every query i >= 1 puts all its weight on key i-1 must score exactly 1 (T={t}); got {got:.6g}"
        )
        uniform = torch.ones(t, t, dtype=torch.float64).tril()
        uniform = uniform / uniform.sum(-1, keepdim=True)
        expected = sum(1 / (i + 1) for i in range(1, t)) / (t - 1)
        got = float(previous_token_score(uniform))
        assert abs(got - expected) < 1e-9, (
            f"a uniform causal head (query i gives 1/(i+1) to each of its keys) must score "
            f"mean over i = 1 .. T-1 of 1/(i+1) = {expected:.6g} for T={t}; got {got:.6g}"
        )
