"""Hidden checks for ps04 `merge_heads(x)`, against `torch.cat` of the heads along the features.

One property per check: the shape, the concatenation, and being the inverse of a reference split_heads.
"""

import torch

from mastering_transformers.grading import check


def _heads(seed, b, h, t, d):
    return torch.randn(b, h, t, d, generator=torch.Generator().manual_seed(seed))


def _merged(merge_heads, x):
    out = merge_heads(x)
    assert isinstance(out, torch.Tensor), f"merge_heads must return a tensor; got {type(out).__name__}"
    b, h, t, d = x.shape
    assert tuple(out.shape) == (b, t, h * d), (
        f"for x of shape {tuple(x.shape)} the result must have shape (B, T, H*D) = {(b, t, h * d)}; "
        f"got {tuple(out.shape)}"
    )
    return out


@check(points=1)
def test_shape(merge_heads):
    """shape (B, H, T, D) -> (B, T, H*D)"""
    for seed, dims in enumerate([(2, 3, 5, 4), (1, 4, 7, 2), (3, 1, 6, 5), (2, 2, 1, 3), (1, 1, 1, 4)]):
        _merged(merge_heads, _heads(4300 + seed, *dims))


@check(points=1)
def test_concatenates_heads(merge_heads):
    """each position gets the heads' vectors side by side"""
    for seed, dims in enumerate([(2, 3, 5, 4), (2, 4, 6, 3)]):
        x = _heads(4400 + seed, *dims)
        out = _merged(merge_heads, x)
        expected = torch.cat([x[:, i] for i in range(x.shape[1])], dim=-1)  # (B, T, H*D)
        assert torch.equal(out, expected), (
            f"out[b, t] must be head 0's, head 1's, ... vectors of position t side by side (torch.cat over "
            f"the heads); it is not, for x of shape {tuple(x.shape)}: transpose(1, 2) back to (B, T, H, D) "
            f"before merging the last two dims"
        )


@check(points=1)
def test_inverse_of_split(merge_heads):
    """merge_heads undoes split_heads"""
    g = torch.Generator().manual_seed(4500)
    for b, t, c, h in [(2, 5, 12, 3), (3, 4, 8, 2)]:
        y = torch.randn(b, t, c, generator=g)
        split = y.view(b, t, h, c // h).transpose(1, 2)  # reference split_heads
        out = _merged(merge_heads, split)
        assert torch.equal(out, y), (
            f"merge_heads(split_heads(y)) must give back y (shape {(b, t, c)}, {h} heads); it does not"
        )
