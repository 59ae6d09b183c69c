"""Hidden checks for ps11 `accumulate(micro_batch_grads, token_counts=None) -> list of tensors`, against the gradient
of one large batch computed here by autograd: a small softmax classifier (a weight (V, C), a bias (V,), a gain
(1, C) and a 0-dim scale, so size-1 and 0-dim parameters are included) whose batch is cut into K micro-batches; each
micro-batch's gradient is that of its own mean loss (`F.cross_entropy`, ignored targets left out).

One property per check: equal micro-batches with the default token_counts=None (the plain mean of the K gradients is
the large batch's gradient); micro-batches counting different numbers of targets (weighted by token_counts); the
result's structure (one tensor per parameter, its exact shape and dtype; one micro-batch gives its own gradients).
"""

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _params(g: torch.Generator, v: int, c: int, dtype):
    def r(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)

    return [r(v, c), r(v), r(1, c, scale=0.1, shift=1.0), r()]


def _loss(params, x, y):
    weight, bias, gain, scale = params
    return F.cross_entropy(((x * gain) @ weight.T) * scale + bias, y)


def _case(seed: int, sizes: list[int], v: int = 5, c: int = 4, ignore: float = 0.0, dtype=torch.float64):
    """Per-micro-batch gradients (K lists of 4 tensors), the counted targets per micro-batch, the large batch's
    gradient (4 tensors)."""
    g = torch.Generator().manual_seed(seed)
    params = _params(g, v, c, dtype)
    xs = [torch.randn(n, c, generator=g, dtype=torch.float64).to(dtype) for n in sizes]
    ys = []
    for n in sizes:
        y = torch.randint(0, v, (n,), generator=g)
        dropped = torch.rand(n, generator=g) < ignore
        dropped[0] = False  # every micro-batch counts at least one target
        ys.append(y.masked_fill(dropped, -100))
    micro = [list(torch.autograd.grad(_loss(params, x, y), params)) for x, y in zip(xs, ys)]
    counts = [int((y != -100).sum()) for y in ys]
    big = list(torch.autograd.grad(_loss(params, torch.cat(xs), torch.cat(ys)), params))
    return micro, counts, big


def _run(accumulate, micro, *args, **kwargs) -> list:
    out = accumulate(micro, *args, **kwargs)
    assert isinstance(out, (list, tuple)) and len(out) == len(micro[0]), (
        f"accumulate must return a list with one gradient per parameter ({len(micro[0])}); got "
        f"{type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, (list, tuple)) else "")
    )
    for i, (o, r) in enumerate(zip(out, micro[0])):
        expect_tensor(o, f"accumulated gradient {i}", tuple(r.shape))
    return list(out)


def _error(out, reference) -> float:
    return max(largest(o.double() - r.double()) / max(largest(r), 1e-300) for o, r in zip(out, reference))


@check(points=1)
def test_equal_micro_batches(accumulate):
    """equal micro-batches, token_counts=None (the default): the mean of the gradients is the large batch's"""
    for seed, sizes in enumerate([[6, 6, 6, 6], [3, 3], [8, 8, 8], [1, 1, 1, 1, 1]]):
        micro, _, big = _case(12700 + seed, sizes)
        error = _error(_run(accumulate, micro), big)
        assert error < 1e-10, (
            f"{len(sizes)} micro-batches of {sizes[0]} targets each: the gradient of the large batch's mean loss is "
            f"the mean of the {len(sizes)} micro-batch gradients (sum them and divide by K = {len(sizes)}); relative "
            f"error {error:.2g}"
        )


@check(points=1)
def test_token_counts(accumulate):
    """micro-batches counting different numbers of targets: weighted by token_counts"""
    cases = [([6, 6, 6], 0.5), ([4, 9, 2, 7], 0.0), ([5, 5], 0.6), ([3, 8, 8, 1], 0.3)]
    for seed, (sizes, ignore) in enumerate(cases):
        micro, counts, big = _case(12800 + seed, sizes, ignore=ignore)
        error = _error(_run(accumulate, micro, counts), big)
        assert error < 1e-10, (
            f"micro-batches counting {counts} targets: each gradient is that of its own mean, so micro-batch k must "
            f"weigh n_k / sum(n) = {[round(n / sum(counts), 3) for n in counts]} (the sum of n_k * g_k divided by "
            f"the total count) to give the large batch's gradient; relative error {error:.2g}"
        )
    micro, counts, big = _case(12850, [4, 4, 4], ignore=0.0)
    error = _error(_run(accumulate, micro, token_counts=counts), big)
    assert error < 1e-10, f"equal token_counts {counts} must give the plain mean; relative error {error:.2g}"


@check(points=1)
def test_structure(accumulate):
    """one tensor per parameter, exact shape and dtype; a single micro-batch returns its own gradients"""
    for seed, (sizes, dtype) in enumerate([([5], torch.float64), ([4, 4], torch.float32), ([2], torch.float32)]):
        micro, counts, _ = _case(12900 + seed, sizes, dtype=dtype)
        for args in ((), (counts,)):
            out = _run(accumulate, micro, *args)
            for i, (o, r) in enumerate(zip(out, micro[0])):
                assert o.dtype == r.dtype, f"accumulated gradient {i} must keep the dtype {r.dtype}; got {o.dtype}"
        if len(sizes) == 1:
            error = _error(_run(accumulate, micro), micro[0])
            assert error < 1e-6, (
                f"with a single micro-batch the accumulated gradients are that micro-batch's own; relative error "
                f"{error:.2g}"
            )
    micro, counts, _ = _case(12950, [3, 3, 3])
    single = [[grads[1]] for grads in micro]  # one parameter (the bias)
    for args in ((), ([3, 3, 3],)):
        _run(accumulate, single, *args)
