"""Hidden checks for ps04 `split_heads(x, n_head)`, against slicing the feature axis by hand.

One property per check: the shape (B, H, T, D), and which numbers land in which head and position.
"""

import torch

from mastering_transformers.grading import check


def _x(seed, b, t, c):
    return torch.randn(b, t, c, generator=torch.Generator().manual_seed(seed))


def _tensor(out, name="split_heads"):
    assert isinstance(out, torch.Tensor), f"{name} must return a tensor; got {type(out).__name__}"
    return out


@check(points=1)
def test_shape(split_heads):
    """shape (B, T, C) -> (B, H, T, D) with D = C // H"""
    for seed, (b, t, c, h) in enumerate([(2, 5, 12, 3), (3, 7, 8, 4), (1, 4, 6, 1), (2, 1, 6, 2), (1, 1, 4, 4)]):
        out = _tensor(split_heads(_x(4100 + seed, b, t, c), h))
        assert tuple(out.shape) == (b, h, t, c // h), (
            f"for x of shape {(b, t, c)} and n_head={h} the result must have shape (B, H, T, D) = "
            f"{(b, h, t, c // h)}; got {tuple(out.shape)}"
        )


@check(points=2)
def test_head_slices(split_heads):
    """head h at position t holds features h*D .. (h+1)*D - 1 of token t"""
    for seed, (b, t, c, h) in enumerate([(2, 6, 12, 3), (3, 5, 16, 4)]):
        x = _x(4200 + seed, b, t, c)
        out = _tensor(split_heads(x, h))
        d = c // h
        assert tuple(out.shape) == (b, h, t, d), f"expected shape {(b, h, t, d)}; got {tuple(out.shape)}"
        for head in range(h):
            expected = x[:, :, head * d:(head + 1) * d]  # (B, T, D)
            assert torch.equal(out[:, head], expected), (
                f"out[:, {head}] must be x[:, :, {head * d}:{(head + 1) * d}] (head {head}'s features of every "
                f"token, one row per position); it is not: view as (B, T, H, D) first, then transpose(1, 2)"
            )
