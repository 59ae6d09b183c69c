"""Hidden checks for ps05 `post_ln_block(x, attn, mlp, norm1, norm2)`: x = norm1(x + attn(x)); x = norm2(x + mlp(x)).

The sublayers and norms are plain functions built here (LayerNorms with random weights, random linear and
nonlinear sublayers, in float64) that record what they are called with, so each check looks at one property:
what attention reads, what the MLP reads, the final normalisation, and the whole block.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import Recorder, block_input, block_parts


def _run(post_ln_block, x, attn, mlp, norm1, norm2):
    y = post_ln_block(x, attn, mlp, norm1, norm2)
    assert isinstance(y, torch.Tensor), f"post_ln_block must return a tensor; got {type(y).__name__}"
    assert y.shape == x.shape, f"the block keeps the shape of x {tuple(x.shape)}; got {tuple(y.shape)}"
    return y


def _reference(x, attn, mlp, norm1, norm2):
    x = norm1(x + attn(x))
    return norm2(x + mlp(x))


def _close(a, b) -> float:
    return float((a.double() - b.double()).abs().nan_to_num(float("inf")).max())


@check(points=1)
def test_attention_input(post_ln_block):
    """attention reads x itself (no norm before it)"""
    norm1, norm2, attn, mlp = block_parts(8101, 8)
    x = block_input(8102, (2, 5, 8))
    attn = Recorder(attn)
    _run(post_ln_block, x, attn, mlp, norm1, norm2)
    assert attn.inputs, "attn was never called"
    error = max(_close(h, x) if h.shape == x.shape else float("inf") for h in attn.inputs)
    assert error < 1e-9, (
        f"in a Post-LN block attn reads the block's input x as it is; its input differs by up to {error:.3g}: "
        "the norm comes after the addition, not before the sublayer"
    )


@check(points=1)
def test_mlp_input(post_ln_block):
    """the MLP reads norm1(x + attn(x))"""
    norm1, norm2, attn, mlp = block_parts(8201, 8)
    x = block_input(8202, (3, 4, 8))
    mlp = Recorder(mlp)
    _run(post_ln_block, x, attn, mlp, norm1, norm2)
    assert mlp.inputs, "mlp was never called"
    expected = norm1(x + attn(x))
    error = max(_close(h, expected) if h.shape == x.shape else float("inf") for h in mlp.inputs)
    assert error < 1e-9, (
        f"mlp must be called on x1 = norm1(x + attn(x)), the normalised stream after the attention step; its "
        f"input differs by up to {error:.3g}"
    )


@check(points=1)
def test_output_normalised(post_ln_block):
    """the output is normalised by norm2: sublayers that output 0 give norm2(norm1(x))"""
    norm1, norm2, _, _ = block_parts(8301, 6)
    x = block_input(8302, (2, 7, 6))
    zero = lambda h: torch.zeros_like(h)  # noqa: E731
    y = _run(post_ln_block, x, zero, zero, norm1, norm2)
    error = _close(y, norm2(norm1(x)))
    assert error < 1e-9, (
        f"when attn and mlp output zeros, a Post-LN block returns norm2(norm1(x)): each addition is followed by "
        f"its norm, the last one included; got a difference of up to {error:.3g}"
    )


@check(points=1)
def test_matches_reference(post_ln_block):
    """matches x1 = norm1(x + attn(x)); norm2(x1 + mlp(x1))"""
    for seed, shape in [(8401, (2, 5, 8)), (8402, (1, 9, 4))]:
        norm1, norm2, attn, mlp = block_parts(seed, shape[-1])
        x = block_input(seed + 50, shape)
        error = _close(_run(post_ln_block, x, attn, mlp, norm1, norm2), _reference(x, attn, mlp, norm1, norm2))
        assert error < 1e-9, f"for x of shape {shape} the block differs from the Post-LN formula by up to {error:.3g}"
