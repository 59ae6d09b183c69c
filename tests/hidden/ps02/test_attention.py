"""Hidden checks for ps02 `attention(q, k, v, mask=None)`, against
`torch.nn.functional.scaled_dot_product_attention` (output) and `torch.softmax` of the scaled scores
(weights), in float64.

While these checks run, the student's `attention_scores`, `stable_softmax` and `causal_mask` are
replaced by the references in ISOLATE, so a bug in those is not charged a second time here.
"""

import math

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import max_error


def _reference_scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def _reference_softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)


def _reference_causal_mask(t):
    i = torch.arange(t)
    return i[None, :] <= i[:, None]


ISOLATE = {
    "attention_scores": _reference_scores,
    "stable_softmax": _reference_softmax,
    "causal_mask": _reference_causal_mask,
}


def _qkv(seed, lead, t_q, t_k, d, d_v):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*lead, t_q, d, generator=g), torch.randn(*lead, t_k, d, generator=g),
            torch.randn(*lead, t_k, d_v, generator=g))


def _call(attention, q, k, v, mask=None):
    """(output, weights) from the student's attention, with the type checked."""
    result = attention(q, k, v) if mask is None else attention(q, k, v, mask=mask)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"attention must return a pair (output, weights); got {type(result).__name__}"
    )
    out, w = result
    assert isinstance(out, torch.Tensor) and isinstance(w, torch.Tensor), "output and weights must be tensors"
    return out, w


def _reference_weights(q, k, mask=None):
    scores = _reference_scores(q.double(), k.double())
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


@check(points=1)
def test_shapes(attention):
    """shapes: output (..., T_q, D_v), weights (..., T_q, T_k)"""
    for seed, lead, t_q, t_k, d, d_v in [(2501, (2, 3), 5, 7, 4, 6), (2502, (), 4, 9, 8, 3),
                                         (2503, (1, 1), 1, 3, 2, 1)]:
        q, k, v = _qkv(seed, lead, t_q, t_k, d, d_v)
        out, w = _call(attention, q, k, v)
        assert tuple(out.shape) == (*lead, t_q, d_v), (
            f"for q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} the output must have shape "
            f"(..., T_q, D_v) = {(*lead, t_q, d_v)}; got {tuple(out.shape)}"
        )
        assert tuple(w.shape) == (*lead, t_q, t_k), (
            f"the weights must have shape (..., T_q, T_k) = {(*lead, t_q, t_k)}; got {tuple(w.shape)}"
        )


@check(points=1)
def test_weights_are_distributions(attention):
    """each row of weights is a distribution over the keys"""
    q, k, v = _qkv(2601, (2, 2), 6, 4, 8, 5)
    _, w = _call(attention, q, k, v)
    sums = w.double().sum(dim=-1)
    assert bool((w >= 0).all()) and torch.allclose(sums, torch.ones_like(sums), atol=1e-5), (
        f"rows of the weights must be >= 0 and sum to 1 over the keys (the last dim); got row sums from "
        f"{float(sums.min()):.3g} to {float(sums.max()):.3g}: apply the softmax over dim=-1"
    )


@check(points=1)
def test_matches_reference(attention):
    """matches reference attention without a mask"""
    for seed, lead, t_q, t_k, d, d_v in [(2701, (2, 3), 5, 7, 16, 4), (2702, (3,), 8, 8, 4, 4)]:
        q, k, v = _qkv(seed, lead, t_q, t_k, d, d_v)
        out, w = _call(attention, q, k, v)
        w_error = max_error(w, _reference_weights(q, k))
        out_error = max_error(out, F.scaled_dot_product_attention(q.double(), k.double(), v.double()))
        assert w_error < 1e-5 and out_error < 1e-5, (
            f"softmax(q k^T / sqrt(d_k)) v does not match the reference for q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}: max error {w_error:.2g} in the weights and "
            f"{out_error:.2g} in the output"
        )


def _random_mask(g, shape):
    """A boolean mask with at least one allowed key in every row."""
    mask = torch.rand(*shape, generator=g) < 0.5
    rows = mask.reshape(-1, shape[-1])
    rows[torch.arange(rows.shape[0]), torch.randint(0, shape[-1], (rows.shape[0],), generator=g)] = True
    return rows.reshape(shape)


@check(points=1)
def test_mask(attention):
    """honours a boolean mask (True = allowed; masked weights exactly 0)"""
    g = torch.Generator().manual_seed(2801)
    q, k, v = _qkv(2802, (2, 3), 5, 7, 8, 4)
    q6, k6, v6 = _qkv(2803, (2,), 6, 6, 4, 3)
    cases = [("a (T_q, T_k) mask", q, k, v, _random_mask(g, (5, 7))),
             ("a (B, 1, T_q, T_k) mask", q, k, v, _random_mask(g, (2, 1, 5, 7))),
             ("the causal mask", q6, k6, v6, _reference_causal_mask(6))]
    for label, q, k, v, mask in cases:
        out, w = _call(attention, q, k, v, mask)
        blocked = ~mask.expand(w.shape)
        leak = float(w.double()[blocked].abs().nan_to_num(float("inf")).max())
        assert leak == 0, (
            f"with {label}, weights where the mask is False must be exactly 0 (True means allowed: set the "
            f"other scores to -inf before the softmax); got up to {leak:.3g}"
        )
        reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
        error = max(max_error(w, _reference_weights(q, k, mask)), max_error(out, reference))
        assert error < 1e-5, (
            f"with {label} the output and weights must match reference attention; max error {error:.2g}"
        )
