"""Hidden checks for ps08 `attention_pool(h, lengths, query)`, against the formula computed here in float64 with
torch.softmax: scores h[b, t] . query / sqrt(C), padding scores -inf, weights softmax over t, out = sum_t w h.

One property per check: the exact shape (B, C) and dtype; the formula without padding; the padding (large values
in the padding and extra padding positions give the result of the real tokens alone); the gradients with respect
to h and query, which the classifier trains through (autograd in the student's process against finite differences
of the student's own function, so a wrong forward pass is not charged twice).

While these checks run, the student's `padding_mask` is replaced by the reference in ISOLATE.
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _reference_padding_mask(lengths, t):
    return (torch.arange(t)[None, :] < torch.as_tensor(lengths)[:, None])[:, None, None, :]


ISOLATE = {"padding_mask": _reference_padding_mask}


def _case(seed: int, b: int, t: int, c: int):
    """States (B, T, C), lengths in [1, T] and a query (C,) that makes the weights far from uniform, in float64."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    if b >= 2:
        lengths[0], lengths[-1] = t, 1
    elif t > 1:
        lengths[0] = t - 1
    h = 2 * torch.randn(b, t, c, generator=g, dtype=torch.float64) + 0.3
    query = 1.5 * torch.randn(c, generator=g, dtype=torch.float64)
    return h, lengths, query


def _reference(h, lengths, query):
    h = h.double()
    t, c = h.shape[1], h.shape[2]
    scores = h @ query.double() / math.sqrt(c)
    keep = torch.arange(t)[None, :] < torch.as_tensor(lengths)[:, None]
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    return (weights[:, :, None] * h).sum(dim=1)


def _run(attention_pool, h, lengths, query):
    out = attention_pool(h, lengths, query)
    b, _, c = h.shape
    expect_tensor(out, f"attention_pool on h of shape {tuple(h.shape)}", (b, c))
    return out


@check(points=1)
def test_shape(attention_pool):
    """shape (B, C) in the dtype of h, B = 1 and T = 1 included"""
    for seed, (b, t, c) in enumerate([(3, 6, 5), (1, 4, 8), (4, 1, 3), (1, 1, 1), (2, 7, 1)]):
        for dtype in (torch.float64, torch.float32):
            h, lengths, query = _case(9700 + seed, b, t, c)
            out = attention_pool(h.to(dtype), lengths, query.to(dtype))
            expect_tensor(out, f"attention_pool on h of shape {(b, t, c)}")
            assert tuple(out.shape) == (b, c), (
                f"for h of shape (B, T, C) = {(b, t, c)} and query ({c},) the result must have shape (B, C) = "
                f"{(b, c)}; got {tuple(out.shape)}"
            )
            assert out.dtype == dtype, f"attention_pool must return h's dtype {dtype}; got {out.dtype}"


@check(points=1)
def test_no_padding(attention_pool):
    """matches softmax(h . query / sqrt(C)) over the positions, weighted sum of h, without padding"""
    for seed, (b, t, c) in enumerate([(3, 6, 5), (1, 4, 8), (4, 5, 16), (2, 1, 3), (3, 7, 1)]):
        h, _, query = _case(9800 + seed, b, t, c)
        full = torch.full((b,), t)
        error = largest(_run(attention_pool, h, full, query) - _reference(h, full, query))
        assert error < 1e-8, (
            f"without padding (h of shape {(b, t, c)}) the result must be sum_t w[b, t] h[b, t] with w[b] = "
            f"softmax over the positions t of h[b, t] . query / sqrt(C = {c}); max error {error:.2g}"
        )


@check(points=1)
def test_padding(attention_pool):
    """padding gets weight 0: large values and extra padding positions change nothing"""
    for seed, (b, t, c) in enumerate([(4, 6, 5), (1, 5, 8), (3, 4, 3), (5, 3, 2)]):
        h, lengths, query = _case(9900 + seed, b, t, c)
        g = torch.Generator().manual_seed(9950 + seed)
        garbage = h.clone()
        for i, n in enumerate(lengths.tolist()):
            garbage[i, n:] = 100 * torch.randn(t - n, c, generator=g, dtype=torch.float64)
        extra = torch.cat([garbage, 100 * torch.randn(b, 2, c, generator=g, dtype=torch.float64)], dim=1)
        reference = _reference(h, lengths, query)
        for label, states in [("", h), (" with large values in the padding", garbage),
                              (" with 2 more padding positions appended", extra)]:
            error = largest(_run(attention_pool, states, lengths, query) - reference)
            assert error < 1e-8, (
                f"lengths {lengths.tolist()}{label} (h {tuple(states.shape)}): max error {error:.2g} from the pool "
                f"of the real tokens alone; give positions j >= length the score -inf before the softmax "
                f"(weight exactly 0)"
            )


@check(points=1)
def test_gradient(attention_pool):
    """gradients with respect to h and query agree with finite differences"""
    checked = 0
    for seed, (b, t, c) in enumerate([(3, 6, 4), (1, 5, 3), (2, 1, 2)]):
        h, lengths, query = _case(10000 + seed, b, t, c)
        g = torch.Generator().manual_seed(10050 + seed)
        cotangent = torch.randn(b, c, generator=g, dtype=torch.float64)
        out, grads = attention_pool.vjp((h, lengths, query), cotangent, wrt=(0, 2))
        expect_tensor(out, "attention_pool's output", (b, c))
        if not torch.isfinite(out).all():
            continue  # a NaN output is the forward checks' business
        checked += 1
        args = [h, lengths, query]
        for (k, name), grad in zip([(0, "h"), (2, "query")], grads):
            if grad is not None:
                expect_tensor(grad, f"the gradient with respect to {name}", tuple(args[k].shape))
            direction = torch.randn(args[k].shape, generator=g, dtype=torch.float64)
            eps = 1e-6
            plus, minus = list(args), list(args)
            plus[k], minus[k] = args[k] + eps * direction, args[k] - eps * direction
            moved = _run(attention_pool, *plus) - _run(attention_pool, *minus)
            numeric = float((moved * cotangent).sum()) / (2 * eps)
            analytic = 0.0 if grad is None else float((grad.double() * direction).sum())
            gap = abs(numeric - analytic) / max(1.0, abs(numeric))
            assert gap < 1e-5, (
                f"the gradient with respect to {name} (autograd) differs from finite differences of your function "
                f"(relative gap {gap:.2g}, h {(b, t, c)}): no .detach(), .data, .item() or torch.no_grad() between "
                f"{name} and the output"
            )
    assert checked, "your output holds NaN or inf for every input of this check, so its gradient cannot be checked"
