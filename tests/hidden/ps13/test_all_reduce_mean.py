"""Hidden checks for ps13 `all_reduce_mean(rank_grads) -> list of lists of tensors`, for a simulated world:
``rank_grads[r][k]`` is rank r's gradient of parameter k; every rank must get back the mean over the ranks.
References: the mean computed here in float64, and autograd's gradient of the whole global batch of a small model
whose batch is split into equal parts, one per rank (what DDP guarantees).

One property per check: the mean over ranks, for every rank, world sizes 1 to 5; the global batch's gradient from
the ranks' gradients of their own parts; float16 gradients whose sum overflows float16 (average without overflow,
return float16); the structure (W lists of K tensors of the input shapes and dtypes, 0-dim and size-1 included).
"""

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor

SHAPES = [(3, 4), (4,), (1, 3), ()]


def _world(seed, w, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [[(scale * torch.randn(s, generator=g, dtype=torch.float64)).to(dtype) for s in SHAPES] for _ in range(w)]


def _call(fn, world):
    out = fn(world)
    assert isinstance(out, (list, tuple)) and len(out) == len(world), (
        f"return one list of gradients per rank ({len(world)} ranks); got {type(out).__name__} of length "
        f"{len(out) if hasattr(out, '__len__') else '?'}"
    )
    for r, grads in enumerate(out):
        assert isinstance(grads, (list, tuple)) and len(grads) == len(world[r]), (
            f"rank {r} must get {len(world[r])} gradients back, one per parameter"
        )
    return out


@check(points=1)
def test_mean_over_ranks(all_reduce_mean):
    """every rank receives the mean over the ranks of each gradient (1 to 5 ranks)"""
    for w in (1, 2, 3, 5):
        world = _world(14400 + w, w)
        out = _call(all_reduce_mean, world)
        for k in range(len(SHAPES)):
            mean = sum(world[r][k].double() for r in range(w)) / w
            for r in range(w):
                got = expect_tensor(out[r][k], f"rank {r}, gradient {k}", SHAPES[k])
                err = (got.double() - mean).abs().max().item()
                assert err < 1e-6, (
                    f"{w} ranks: rank {r} must receive the mean over the ranks of gradient {k} (sum over ranks / {w}); "
                    f"it is off by {err:.3g}"
                )


@check(points=1)
def test_global_batch(all_reduce_mean):
    """the ranks' averaged gradients equal the gradient of the whole batch (equal parts)"""
    g = torch.Generator().manual_seed(14500)
    for w, per_rank in [(2, 3), (4, 2), (3, 1)]:
        weight = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
        x = torch.randn(w * per_rank, 4, generator=g, dtype=torch.float64)
        y = torch.randint(0, 5, (w * per_rank,), generator=g)
        loss = lambda xs, ys: F.cross_entropy(xs @ weight.T + bias, ys)  # noqa: E731
        world = [list(torch.autograd.grad(loss(x[r * per_rank:(r + 1) * per_rank], y[r * per_rank:(r + 1) * per_rank]),
                                          (weight, bias))) for r in range(w)]
        full = torch.autograd.grad(loss(x, y), (weight, bias))
        out = _call(all_reduce_mean, world)
        for r in range(w):
            for k, ref in enumerate(full):
                err = (torch.as_tensor(out[r][k]).double() - ref).abs().max().item()
                assert err < 1e-10, (
                    f"{w} ranks with {per_rank} examples each: after the all-reduce, rank {r}'s gradient {k} must be the "
                    f"gradient of the mean loss over all {w * per_rank} examples; it is off by {err:.3g}"
                )


@check(points=1)
def test_float16_no_overflow(all_reduce_mean):
    """float16 gradients whose sum overflows float16: averaged without overflow, returned as float16"""
    world = _world(14600, 4, torch.float16, scale=1.0)
    for r in range(4):
        world[r][0] = torch.full((3, 4), 40000.0, dtype=torch.float16)  # 4 x 40000 > 65504
    out = _call(all_reduce_mean, world)
    for r in range(4):
        got = torch.as_tensor(out[r][0])
        assert got.dtype == torch.float16, f"float16 gradients come back as float16; got {got.dtype}"
        assert torch.isfinite(got).all() and torch.equal(got, world[0][0]), (
            "the mean of four float16 values of 40000 is 40000, but their sum (160000) overflows float16 (max 65504): "
            "add them up in float32, divide, then cast back"
        )


@check(points=1)
def test_structure(all_reduce_mean):
    """W lists of K tensors, each of its gradient's shape and dtype (0-dim, size-1 and float64 too)"""
    for dtype in (torch.float32, torch.float64):
        world = _world(14700, 3, dtype)
        out = _call(all_reduce_mean, world)
        for r in range(3):
            for k, shape in enumerate(SHAPES):
                got = expect_tensor(out[r][k], f"rank {r}, gradient {k}", shape)
                assert got.dtype == dtype, f"rank {r}, gradient {k}: keep the dtype {dtype}; got {got.dtype}"
