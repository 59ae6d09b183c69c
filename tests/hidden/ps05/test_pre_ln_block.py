"""Hidden checks for ps05 `pre_ln_block(x, attn, mlp, norm1, norm2)`: x = x + attn(norm1(x)); x = x + mlp(norm2(x)).

The sublayers and norms are plain functions built here (LayerNorms with random weights, random linear and
nonlinear sublayers, in float64) that record what they are called with, so each check looks at one property:
what attention reads, what the MLP reads, the untouched residual path, and the whole block.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import Recorder, block_input, block_parts


def _run(pre_ln_block, x, attn, mlp, norm1, norm2):
    y = pre_ln_block(x, attn, mlp, norm1, norm2)
    assert isinstance(y, torch.Tensor), f"pre_ln_block must return a tensor; got {type(y).__name__}"
    assert y.shape == x.shape, f"the block keeps the shape of x {tuple(x.shape)}; got {tuple(y.shape)}"
    return y


def _reference(x, attn, mlp, norm1, norm2):
    x = x + attn(norm1(x))
    return x + mlp(norm2(x))


def _close(a, b) -> float:
    return float((a.double() - b.double()).abs().nan_to_num(float("inf")).max())


@check(points=1)
def test_attention_input(pre_ln_block):
    """attention reads norm1(x)"""
    norm1, norm2, attn, mlp = block_parts(7101, 8)
    x = block_input(7102, (2, 5, 8))
    attn = Recorder(attn)
    _run(pre_ln_block, x, attn, mlp, norm1, norm2)
    assert attn.inputs, "attn was never called"
    error = max(_close(h, norm1(x)) if h.shape == x.shape else float("inf") for h in attn.inputs)
    assert error < 1e-9, (
        f"attn must be called on norm1(x), the normalised input; its input differs by up to {error:.3g}"
    )


@check(points=1)
def test_mlp_input(pre_ln_block):
    """the MLP reads norm2 of the stream after attention: norm2(x + attn(norm1(x)))"""
    norm1, norm2, attn, mlp = block_parts(7201, 8)
    x = block_input(7202, (3, 4, 8))
    mlp = Recorder(mlp)
    _run(pre_ln_block, x, attn, mlp, norm1, norm2)
    assert mlp.inputs, "mlp was never called"
    expected = norm2(x + attn(norm1(x)))
    error = max(_close(h, expected) if h.shape == x.shape else float("inf") for h in mlp.inputs)
    assert error < 1e-9, (
        f"mlp must be called on norm2(x1) with x1 = x + attn(norm1(x)), the stream after the attention step; "
        f"its input differs by up to {error:.3g}: the second half of the block starts from the updated x"
    )


@check(points=1)
def test_residual_path(pre_ln_block):
    """the residual path carries x unchanged: sublayers that output 0 give back x"""
    norm1, norm2, _, _ = block_parts(7301, 6)
    x = block_input(7302, (2, 7, 6))
    zero = lambda h: torch.zeros_like(h)  # noqa: E731
    y = _run(pre_ln_block, x, zero, zero, norm1, norm2)
    error = _close(y, x)
    assert error < 1e-9, (
        f"when attn and mlp output zeros, a Pre-LN block must return x itself (only the sublayers' inputs are "
        f"normalised, never the stream); got a difference of up to {error:.3g}: add to x, not to norm(x)"
    )


@check(points=1)
def test_matches_reference(pre_ln_block):
    """matches x1 = x + attn(norm1(x)); x + ... = x1 + mlp(norm2(x1))"""
    for seed, shape in [(7401, (2, 5, 8)), (7402, (1, 9, 4))]:
        norm1, norm2, attn, mlp = block_parts(seed, shape[-1])
        x = block_input(seed + 50, shape)
        error = _close(_run(pre_ln_block, x, attn, mlp, norm1, norm2), _reference(x, attn, mlp, norm1, norm2))
        assert error < 1e-9, f"for x of shape {shape} the block differs from the Pre-LN formula by up to {error:.3g}"
