"""Hidden checks for ps01 `additive_scores(s, h, W_s, W_h, v)`, against Bahdanau's score written out for one
query and one key at a time, e_j = v . tanh(W_s s + W_h h_j), in float64.

One property per check: the shape, the formula, and the bound |e_j| <= sum |v| that the tanh guarantees.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow
from mastering_transformers.grading.kit import largest


def _case(seed: int, b: int, s_len: int, d_q: int, d_k: int, a: int, spread: float = 1.0):
    """s (B, D_q), h (B, S, D_k), W_s (A, D_q), W_h (A, D_k), v (A,), in float64."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    s, h = spread * randn(b, d_q), spread * randn(b, s_len, d_k)
    return s, h, randn(a, d_q) / d_q ** 0.5, randn(a, d_k) / d_k ** 0.5, randn(a)


def _reference(s, h, W_s, W_h, v) -> torch.Tensor:
    """One score at a time, straight from the formula: (B, S)."""
    b, s_len = h.shape[:2]
    e = torch.empty(b, s_len, dtype=torch.float64)
    for i in range(b):
        for j in range(s_len):
            e[i, j] = v @ torch.tanh(W_s @ s[i] + W_h @ h[i, j])
    return e


def _scores(additive_scores, s, h, W_s, W_h, v) -> torch.Tensor:
    e = additive_scores(s, h, W_s, W_h, v)
    assert isinstance(e, torch.Tensor), f"additive_scores must return a tensor; got {type(e).__name__}"
    expected = tuple(h.shape[:2])
    assert tuple(e.shape) == expected, (
        f"for s {tuple(s.shape)} and h {tuple(h.shape)} the scores must have shape (B, S) = {expected}, one per "
        f"key; got {tuple(e.shape)}"
    )
    return e.double()


@check(points=1)
def test_shape(additive_scores):
    """shape: s (B, D_q), h (B, S, D_k) -> scores (B, S)"""
    for seed, b, s_len, d_q, d_k, a in [(2101, 2, 5, 3, 4, 6), (2102, 1, 7, 5, 2, 3), (2103, 4, 1, 6, 6, 5)]:
        _scores(additive_scores, *_case(seed, b, s_len, d_q, d_k, a))


@check(points=1)
def test_formula(additive_scores):
    """e_j = v . tanh(W_s s + W_h h_j) for every query and key"""
    for seed, b, s_len, d_q, d_k, a in [(2201, 3, 6, 4, 5, 7), (2202, 2, 4, 3, 8, 5)]:
        case = _case(seed, b, s_len, d_q, d_k, a)
        error = largest(_scores(additive_scores, *case) - _reference(*case))
        assert error < 1e-8, (
            f"the scores differ from v . tanh(W_s s + W_h h_j) by up to {error:.2g} (B={b}, S={s_len}, D_q={d_q}, "
            f"D_k={d_k}, A={a}): project the query with W_s and each key with W_h, add, tanh, then dot with v"
        )


@check(points=1)
def test_bounded(additive_scores):
    """the tanh bounds every score: |e_j| <= sum |v|, even for huge inputs"""
    for seed, b, s_len, d_q, d_k, a in [(2301, 3, 5, 4, 3, 6), (2302, 2, 8, 6, 5, 8)]:
        s, h, W_s, W_h, v = _case(seed, b, s_len, d_q, d_k, a, spread=100.0)
        e = _scores(additive_scores, s, h, W_s, W_h, v)
        bound = float(v.abs().sum())
        top = largest(e)
        assert top <= bound + 1e-9, (
            f"for inputs of size ~100 a score reached {top:.3g}, more than sum |v| = {bound:.3g}: "
            "the tanh goes around W_s s + W_h h_j, before the dot product with v"
        )


@check(points=1)
def test_gradient(additive_scores):
    """gradients flow to s, h, W_s, W_h and v (the attention of chapter 1 is trained)"""
    g = torch.Generator().manual_seed(2350)
    cases = []
    for b, s_len, d_q, d_k, a in [(2, 4, 3, 5, 6), (1, 1, 2, 3, 4)]:
        cases.append((torch.randn(b, d_q, generator=g, dtype=torch.float64),
                      torch.randn(b, s_len, d_k, generator=g, dtype=torch.float64),
                      torch.randn(a, d_q, generator=g, dtype=torch.float64),
                      torch.randn(a, d_k, generator=g, dtype=torch.float64),
                      torch.randn(a, generator=g, dtype=torch.float64)))
    assert_gradients_flow(additive_scores, cases, wrt=(0, 1, 2, 3, 4), what="additive_scores", seed=2351)
