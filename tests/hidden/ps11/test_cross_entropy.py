"""Hidden checks for ps11 `cross_entropy(logits, targets, ignore_index=-100)`, against
`torch.nn.functional.cross_entropy` (mean reduction, the same ignore_index) computed here in float64.

One property per check: a 0-dim tensor in the logits' dtype; the value for ordinary logits; logits like +-1e4 (where
exp overflows even in float64 unless the maximum is subtracted first); ignored targets left out of the mean, with
the default -100, a custom index that is a real class id, and every target ignored (the mean over nothing: nan, as
`F.cross_entropy` gives); the gradient with respect to the logits, which every training step goes through.
"""

import math

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _case(seed: int, n: int, v: int, scale: float = 3.0, shift: float = 0.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (shift + scale * torch.randn(n, v, generator=g, dtype=torch.float64)).to(dtype)
    targets = torch.randint(0, v, (n,), generator=g)
    return logits, targets


def _loss(cross_entropy, logits, targets, **kwargs) -> torch.Tensor:
    loss = cross_entropy(logits, targets, **kwargs)
    expect_tensor(loss, f"cross_entropy on logits of shape {tuple(logits.shape)}")
    assert tuple(loss.shape) == (), (
        f"cross_entropy must return a 0-dim tensor (one number, shape ()); got shape {tuple(loss.shape)}: take the "
        f".mean() over all positions"
    )
    return loss


def _reference(logits, targets, ignore_index=-100) -> torch.Tensor:
    return F.cross_entropy(logits.double(), targets, ignore_index=ignore_index)


def _relative_error(loss, reference) -> float:
    return largest(loss.double() - reference) / max(1.0, abs(float(reference)))


@check(points=1)
def test_scalar_and_dtype(cross_entropy):
    """a 0-dim tensor in the logits' dtype, N = 1 and V = 2 included"""
    for seed, (n, v) in enumerate([(6, 5), (1, 7), (9, 2), (1, 1)]):
        for dtype in (torch.float32, torch.float64):
            logits, targets = _case(11000 + seed, n, v, dtype=dtype)
            loss = _loss(cross_entropy, logits, targets)
            assert loss.dtype == dtype, (
                f"for {dtype} logits the loss must be {dtype} too (as F.cross_entropy returns); got {loss.dtype}"
            )


@check(points=1)
def test_matches_reference(cross_entropy):
    """matches F.cross_entropy: the mean of logsumexp(z) - z[target]"""
    for seed, (n, v, scale) in enumerate([(8, 5, 3.0), (1, 11, 2.0), (13, 2, 4.0), (20, 40, 1.0), (5, 3, 0.0)]):
        logits, targets = _case(11100 + seed, n, v, scale)
        error = _relative_error(_loss(cross_entropy, logits, targets), _reference(logits, targets))
        assert error < 1e-10, (
            f"for logits of shape (N, V) = {(n, v)} the loss must be the mean over the N rows of "
            f"log(sum_j exp(z_j)) - z[target]; relative error {error:.2g}"
        )
    logits, targets = _case(11150, 12, 6, dtype=torch.float32)
    error = _relative_error(_loss(cross_entropy, logits, targets), _reference(logits, targets))
    assert error < 1e-5, f"for float32 logits of shape (12, 6) the loss is off by {error:.2g} (relative)"


@check(points=1)
def test_large_logits(cross_entropy):
    """stable for logits like +-1e4 (no inf or nan)"""
    cases = [("around +1e4", 11200, 7, 5, 30.0, 1e4, torch.float64),
             ("around -1e4", 11201, 6, 4, 30.0, -1e4, torch.float64),
             ("spread over +-2e4", 11202, 5, 9, 1e4, 0.0, torch.float64),
             ("around +1e4 in float32", 11203, 8, 6, 3.0, 1e4, torch.float32)]
    for label, seed, n, v, scale, shift, dtype in cases:
        logits, targets = _case(seed, n, v, scale, shift, dtype)
        loss = _loss(cross_entropy, logits, targets)
        reference = _reference(logits, targets)
        assert math.isfinite(float(loss)), (
            f"for logits {label} the loss is {float(loss)}: exp overflows (exp(x) is inf above ~88 in float32 and "
            f"~709 in float64); subtract each row's maximum first, logsumexp(z) = m + log(sum_j exp(z_j - m))"
        )
        error = _relative_error(loss, reference)
        tolerance = 1e-10 if dtype == torch.float64 else 5e-3  # float32 holds 1e4 to about 1e-3
        assert error < tolerance, (
            f"for logits {label} the loss is off by {error:.2g} (relative) from the reference {float(reference):.6g}"
        )


@check(points=1)
def test_ignore_index(cross_entropy):
    """ignored targets left out of the mean: the default -100, a custom index, and all ignored (nan)"""
    g = torch.Generator().manual_seed(11300)
    logits, targets = _case(11301, 10, 6)
    targets[torch.tensor([0, 3, 4, 9])] = -100
    loss = _loss(cross_entropy, logits, targets)  # the default ignore_index
    error = _relative_error(loss, _reference(logits, targets))
    assert error < 1e-10, (
        f"with targets {targets.tolist()} and the default ignore_index=-100, the loss must be the mean over the "
        f"{int((targets != -100).sum())} positions whose target is not -100 (divide by their count, not by N = 10); "
        f"relative error {error:.2g}"
    )
    for seed, (n, v, ignore_index) in enumerate([(12, 5, 0), (7, 4, 3), (9, 8, -1)]):
        logits, targets = _case(11310 + seed, n, v)
        ignored = torch.rand(n, generator=g) < 0.4
        ignored[0], ignored[-1] = True, False
        targets = torch.where(ignored, torch.full_like(targets, ignore_index), targets)
        loss = _loss(cross_entropy, logits, targets, ignore_index=ignore_index)
        error = _relative_error(loss, _reference(logits, targets, ignore_index))
        assert error < 1e-10, (
            f"with ignore_index={ignore_index} and targets {targets.tolist()}, every position whose target equals "
            f"{ignore_index} must be left out of the sum and of the count (use the argument, not -100); relative "
            f"error {error:.2g}"
        )
    logits, _ = _case(11320, 4, 5)
    for ignore_index in (-100, 2):
        targets = torch.full((4,), ignore_index)
        loss = _loss(cross_entropy, logits, targets, ignore_index=ignore_index)
        assert math.isnan(float(loss)), (
            f"when every target equals ignore_index={ignore_index} the mean is over no position at all: return "
            f"nan (0 / 0, as F.cross_entropy does); got {float(loss)}"
        )


@check(points=1)
def test_gradient(cross_entropy):
    """gradient with respect to the logits matches F.cross_entropy's (softmax - one-hot) / N"""
    g = torch.Generator().manual_seed(11400)
    for seed, (n, v) in enumerate([(6, 5), (1, 4), (15, 9), (3, 2)]):
        logits, targets = _case(11410 + seed, n, v)
        cotangent = 1 + torch.rand((), generator=g, dtype=torch.float64)
        loss, (grad,) = cross_entropy.vjp((logits, targets), cotangent, wrt=(0,))
        expect_tensor(loss, "the loss")
        assert grad is not None, (
            "the loss does not depend (differentiably) on the logits: no .item(), float() or torch.tensor(...) "
            "around the result, no .detach() of the logits"
        )
        grad = expect_tensor(grad, "the gradient with respect to the logits", (n, v))
        x = logits.clone().requires_grad_(True)
        (reference,) = torch.autograd.grad(_reference(x, targets) * cotangent, x)
        error = largest(grad.double() - reference)
        assert error < 1e-10, (
            f"the gradient of the loss with respect to logits of shape {(n, v)} must be (softmax(z) - onehot(target)) "
            f"/ N, as for F.cross_entropy; max error {error:.2g}: keep every step of the loss differentiable"
        )
