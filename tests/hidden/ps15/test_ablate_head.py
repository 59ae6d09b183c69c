"""Hidden checks for ps15 `ablate_head(merged, head, n_head)`, against the features h*D .. (h+1)*D - 1 (D = C / H)
computed here.

One property per check: the shape and dtype (float32 and float64, size-1 dims); the head's D features are all 0;
every other feature is exactly its input value. The proxy fails a call that changes `merged` in place.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor

CASES = [(16001, (2, 5), 12, 3, 1), (16002, (1, 1), 8, 4, 3), (16003, (3, 2), 6, 2, 0), (16004, (2, 7), 16, 8, 5),
         (16005, (1, 3), 10, 1, 0)]


def _merged(seed: int, bt: tuple, c: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*bt, c, generator=g, dtype=torch.float64) + 0.5).to(dtype)  # no exact zeros


def _slice(head: int, c: int, n_head: int) -> slice:
    d = c // n_head
    return slice(head * d, (head + 1) * d)


@check(points=1)
def test_shape_dtype(ablate_head):
    """shape (B, T, C) and dtype kept"""
    for (seed, bt, c, h, head), dtype in zip(CASES, [torch.float32, torch.float64] * 3):
        x = _merged(seed, bt, c, dtype)
        out = expect_tensor(ablate_head(x, head, h), f"ablate_head of {tuple(x.shape)}", tuple(x.shape))
        assert out.dtype == dtype, f"the result must keep merged's dtype {dtype}; got {out.dtype}"


@check(points=1)
def test_head_zeroed(ablate_head):
    """the head's D features are 0"""
    for seed, bt, c, h, head in CASES:
        x = _merged(seed, bt, c)
        out = expect_tensor(ablate_head(x, head, h), f"ablate_head of {tuple(x.shape)}", tuple(x.shape))
        s = _slice(head, c, h)
        assert bool((out[..., s] == 0).all()), (
            f"with C={c} and n_head={h} each head owns D = C // n_head = {c // h} consecutive features; head {head} "
            f"owns features {s.start} .. {s.stop - 1}, which must all be 0"
        )


@check(points=1)
def test_others_unchanged(ablate_head):
    """every other feature unchanged"""
    for seed, bt, c, h, head in CASES:
        x = _merged(seed, bt, c)
        out = expect_tensor(ablate_head(x, head, h), f"ablate_head of {tuple(x.shape)}", tuple(x.shape))
        keep = torch.ones(c, dtype=torch.bool)
        keep[_slice(head, c, h)] = False
        changed = int((out[..., keep] != x[..., keep]).sum())
        assert changed == 0, (
            f"silencing head {head} of {h} (C={c}) must leave every feature outside its slice exactly as it was; "
            f"{changed} of them changed"
        )
