"""Hidden checks for ps08 `mean_pool(h, lengths)`, against the closed form out[b] = h[b, :lengths[b]].mean(0)
computed here in float64.

One property per check: the exact shape (B, C) and dtype; the division by the true length (zero padding, with and
without extra padding columns, and no padding at all); padding values that change nothing (the same batch with
large values in the padding gives the same result as with zeros); the gradient with respect to h, which chapter 8's
classifier trains through (autograd in the student's process against finite differences of the student's own
function, so a wrong forward pass is not charged twice).

While these checks run, the student's `padding_mask` is replaced by the reference in ISOLATE.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _reference_padding_mask(lengths, t):
    return (torch.arange(t)[None, :] < torch.as_tensor(lengths)[:, None])[:, None, None, :]


ISOLATE = {"padding_mask": _reference_padding_mask}


def _case(seed: int, b: int, t: int, c: int, pad_value: float = 0.0):
    """States (B, T, C) in float64 whose padding holds pad_value * noise, and lengths in [1, T]."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    if b >= 2:
        lengths[0], lengths[-1] = t, 1
    elif t > 1:
        lengths[0] = t - 1
    h = 2 * torch.randn(b, t, c, generator=g, dtype=torch.float64) + 0.5
    noise = torch.randn(b, t, c, generator=g, dtype=torch.float64)
    padding = torch.arange(t)[None, :, None] >= lengths[:, None, None]
    return torch.where(padding, pad_value * noise, h), lengths


def _reference(h, lengths):
    return torch.stack([h[i, :n].double().mean(dim=0) for i, n in enumerate(lengths.tolist())])


def _run(mean_pool, h, lengths):
    out = mean_pool(h, lengths)
    b, _, c = h.shape
    expect_tensor(out, f"mean_pool on h of shape {tuple(h.shape)}", (b, c))
    return out


@check(points=1)
def test_shape(mean_pool):
    """shape (B, C) in the dtype of h, B = 1 and T = 1 included"""
    for seed, (b, t, c) in enumerate([(3, 6, 5), (1, 4, 8), (4, 1, 3), (1, 1, 1), (2, 7, 1)]):
        for dtype in (torch.float64, torch.float32):
            h, lengths = _case(9300 + seed, b, t, c)
            out = mean_pool(h.to(dtype), lengths)
            expect_tensor(out, f"mean_pool on h of shape {(b, t, c)}")
            assert tuple(out.shape) == (b, c), (
                f"for h of shape (B, T, C) = {(b, t, c)} the result must have shape (B, C) = {(b, c)}: average over "
                f"the positions (dim 1); got {tuple(out.shape)}"
            )
            assert out.dtype == dtype, f"mean_pool must return h's dtype {dtype}; got {out.dtype}"


@check(points=1)
def test_divides_by_length(mean_pool):
    """divides by the true length, with zero padding and extra padding columns"""
    for seed, (b, t, c, extra) in enumerate([(4, 7, 5, 0), (3, 5, 4, 3), (1, 6, 3, 2), (2, 1, 4, 4), (3, 4, 2, 0)]):
        h, lengths = _case(9400 + seed, b, t, c)
        reference = _reference(h, lengths)
        h_extra = torch.cat([h, torch.zeros(b, extra, c, dtype=h.dtype)], dim=1)
        error = largest(_run(mean_pool, h_extra, lengths) - reference)
        assert error < 1e-10, (
            f"with lengths {lengths.tolist()} and zeros in the padding (h of shape {tuple(h_extra.shape)}) each row "
            f"must be the mean of the real tokens' states, their sum divided by the length (not by T = "
            f"{t + extra}); max error {error:.2g}"
        )
    h = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(9450), dtype=torch.float64)
    error = largest(_run(mean_pool, h, torch.full((3,), 5)) - h.mean(dim=1))
    assert error < 1e-10, f"with no padding (every length = T = 5) the result is h.mean(dim=1); max error {error:.2g}"


@check(points=1)
def test_padding_values_ignored(mean_pool):
    """large values in the padding change nothing"""
    for seed, (b, t, c) in enumerate([(4, 7, 5), (3, 5, 4), (1, 6, 3), (5, 3, 2)]):
        zeros, lengths = _case(9500 + seed, b, t, c, pad_value=0.0)
        large, _ = _case(9500 + seed, b, t, c, pad_value=1e4)
        gap = largest(_run(mean_pool, large, lengths) - _run(mean_pool, zeros, lengths))
        assert gap < 1e-9, (
            f"with lengths {lengths.tolist()} (T = {t}) filling the padding with values like 1e4 instead of zeros "
            f"changed the result by up to {gap:.2g}: positions j >= length must not enter the sum at all "
            f"(j < length, not <=)"
        )


@check(points=1)
def test_gradient(mean_pool):
    """gradient with respect to h agrees with finite differences"""
    checked = 0
    for seed, (b, t, c) in enumerate([(3, 6, 4), (1, 5, 3), (2, 1, 2)]):
        h, lengths = _case(9600 + seed, b, t, c, pad_value=1.0)
        g = torch.Generator().manual_seed(9650 + seed)
        cotangent = torch.randn(b, c, generator=g, dtype=torch.float64)
        out, (grad,) = mean_pool.vjp((h, lengths), cotangent, wrt=(0,))
        expect_tensor(out, "mean_pool's output", (b, c))
        if not torch.isfinite(out).all():
            continue  # a NaN output is the forward checks' business
        checked += 1
        if grad is not None:
            grad = expect_tensor(grad, "the gradient with respect to h", (b, t, c)).double()
        for _ in range(2):
            direction = torch.randn(b, t, c, generator=g, dtype=torch.float64)
            eps = 1e-6
            plus, minus = _run(mean_pool, h + eps * direction, lengths), _run(mean_pool, h - eps * direction, lengths)
            numeric = float(((plus - minus) * cotangent).sum()) / (2 * eps)
            analytic = 0.0 if grad is None else float((grad * direction).sum())
            gap = abs(numeric - analytic) / max(1.0, abs(numeric))
            assert gap < 1e-5, (
                f"the gradient with respect to h (autograd) differs from finite differences of your function "
                f"(relative gap {gap:.2g}, h {(b, t, c)}): no .detach(), .data, .item() or torch.no_grad() between "
                f"h and the output"
            )
    assert checked, "your output holds NaN or inf for every input of this check, so its gradient cannot be checked"
