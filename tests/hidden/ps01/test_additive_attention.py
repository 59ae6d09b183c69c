"""Hidden checks for ps01 `additive_attention(s, h, W_s, W_h, v, mask=None)`, against `torch.softmax` of the
reference scores and the weighted sum of the keys written as an einsum, in float64.

While these checks run, the student's `additive_scores` is replaced by the reference in ISOLATE, so a bug in it is
not charged a second time here.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import largest


def _reference_scores(s, h, W_s, W_h, v):
    return torch.tanh((s @ W_s.T)[:, None, :] + h @ W_h.T) @ v


ISOLATE = {"additive_scores": _reference_scores}


def _case(seed: int, b: int, s_len: int, d_q: int, d_k: int, a: int):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return randn(b, d_q), randn(b, s_len, d_k), randn(a, d_q), randn(a, d_k), 2 * randn(a)


def _reference(s, h, W_s, W_h, v, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    e = _reference_scores(s, h, W_s, W_h, v)
    if mask is not None:
        e = e.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(e, dim=-1)
    return torch.einsum("bs,bsd->bd", weights, h), weights


def _call(additive_attention, case, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    result = additive_attention(*case) if mask is None else additive_attention(*case, mask=mask)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"additive_attention must return a pair (context, weights); got {type(result).__name__}"
    )
    context, weights = result
    assert isinstance(context, torch.Tensor) and isinstance(weights, torch.Tensor), (
        "context and weights must be tensors"
    )
    return context, weights


def _max_error(x: torch.Tensor, reference: torch.Tensor, what: str) -> float:
    assert tuple(x.shape) == tuple(reference.shape), (
        f"the {what} must have shape {tuple(reference.shape)}; got {tuple(x.shape)}"
    )
    return largest(x.double() - reference)


@check(points=1)
def test_shapes(additive_attention):
    """shapes: context (B, D_k), weights (B, S)"""
    for seed, b, s_len, d_q, d_k, a in [(2401, 2, 5, 3, 4, 6), (2402, 3, 8, 6, 2, 4)]:
        context, weights = _call(additive_attention, _case(seed, b, s_len, d_q, d_k, a))
        assert tuple(context.shape) == (b, d_k), (
            f"the context is a weighted average of the keys: shape (B, D_k) = {(b, d_k)}; got {tuple(context.shape)}"
        )
        assert tuple(weights.shape) == (b, s_len), (
            f"one weight per key: shape (B, S) = {(b, s_len)}; got {tuple(weights.shape)}"
        )


@check(points=1)
def test_weights_are_distributions(additive_attention):
    """each row of weights is a distribution over the S keys"""
    _, weights = _call(additive_attention, _case(2501, 4, 6, 3, 5, 7))
    sums = weights.double().sum(dim=-1)
    assert bool((weights >= 0).all()) and torch.allclose(sums, torch.ones_like(sums), atol=1e-8), (
        f"each row of weights must be >= 0 and sum to 1 over the keys (dim=-1); row sums from "
        f"{float(sums.min()):.3g} to {float(sums.max()):.3g}: apply the softmax over the keys, not the batch"
    )


@check(points=1)
def test_matches_reference(additive_attention):
    """weights = softmax of the scores over the keys, context = sum_j weights_j h_j"""
    for seed, b, s_len, d_q, d_k, a in [(2601, 3, 7, 4, 5, 6), (2602, 2, 4, 6, 3, 8)]:
        case = _case(seed, b, s_len, d_q, d_k, a)
        context, weights = _call(additive_attention, case)
        ref_context, ref_weights = _reference(*case)
        w_error = _max_error(weights, ref_weights, "weights")
        c_error = _max_error(context, ref_context, "context")
        assert w_error < 1e-8 and c_error < 1e-8, (
            f"max error {w_error:.2g} in the weights and {c_error:.2g} in the context (B={b}, S={s_len}): the weights "
            "are softmax_j(e_j) and the context is the weighted sum of the keys h_j"
        )


@check(points=1)
def test_mask(additive_attention):
    """honours a (B, S) boolean mask: True = keep, masked weights exactly 0"""
    g = torch.Generator().manual_seed(2701)
    for seed, b, s_len in [(2702, 4, 6), (2703, 3, 9)]:
        case = _case(seed, b, s_len, 3, 4, 5)
        mask = torch.rand(b, s_len, generator=g) < 0.5
        mask[torch.arange(b), torch.randint(0, s_len, (b,), generator=g)] = True  # one key kept per row
        context, weights = _call(additive_attention, case, mask)
        ref_context, ref_weights = _reference(*case, mask)
        leak = largest(weights.double()[~mask])
        assert leak == 0, (
            f"weights where the mask is False must be exactly 0 (True means keep: set those scores to -inf before "
            f"the softmax); got up to {leak:.3g}"
        )
        error = max(_max_error(weights, ref_weights, "weights"), _max_error(context, ref_context, "context"))
        assert error < 1e-8, (
            f"with a mask, the weights must be the softmax over the kept keys only (they sum to 1) and the context "
            f"their weighted sum; max error {error:.2g}"
        )
