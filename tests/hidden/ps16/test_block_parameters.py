"""Hidden checks for ps16 `block_parameters(d_model, n_head, n_kv_head, d_ff, mlp="gelu", bias=True, norm="layer")`,
against the parameters of the course's own block, `mt.Block(d_model, n_head, d_ff, norm=..., bias=..., n_kv_head=...,
mlp=...)`, built and counted here (the student's code never sees it).

One property per check, the other options held at their defaults: a Python int for full multi-head attention;
grouped-query attention (smaller K and V projections); SwiGLU (three matrices); no biases (LayerNorm without its
bias); RMSNorm (a gain only). Widths, head counts and hidden sizes are random, size-1 head size included.
"""

import random

from mastering_transformers import Block
from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_int


def _reference(c, h, kv, d_ff, mlp="gelu", bias=True, norm="layer") -> int:
    block = Block(c, h, d_ff=d_ff, norm=norm, bias=bias, n_kv_head=kv, mlp=mlp)
    return sum(p.numel() for p in block.parameters())


def _shapes(seed, n=4, gqa=False):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        h = rng.choice([1, 2, 4, 6, 8])
        c = h * rng.choice([1, 2, 3, 8, 16])
        kv = rng.choice([d for d in range(1, h) if h % d == 0] or [1]) if gqa and h > 1 else h
        out.append((c, h, kv, rng.randint(1, 5 * c)))
    if gqa:
        out.append((16, 8, 2, 40))
    return out


def _count(block_parameters, c, h, kv, d_ff, **options) -> int:
    what = f"block_parameters({c}, {h}, {kv}, {d_ff}{''.join(f', {k}={v!r}' for k, v in options.items())})"
    return expect_int(block_parameters(c, h, kv, d_ff, **options), what), what


@check(points=1)
def test_multi_head_gelu(block_parameters):
    """full multi-head attention, GELU MLP, biases, LayerNorm: a Python int"""
    for c, h, kv, d_ff in _shapes(16700):
        n, what = _count(block_parameters, c, h, kv, d_ff)
        expected = _reference(c, h, kv, d_ff)
        assert n == expected, (
            f"{what}: 4 attention projections C x C with biases, the MLP C -> d_ff -> C with biases and two "
            f"LayerNorms (gain and bias) make {expected}; got {n}"
        )


@check(points=1)
def test_grouped_query(block_parameters):
    """grouped-query attention: K and V map C to n_kv_head * head size"""
    for c, h, kv, d_ff in _shapes(16800, gqa=True):
        n, what = _count(block_parameters, c, h, kv, d_ff)
        expected = _reference(c, h, kv, d_ff)
        assert n == expected, (
            f"{what}: with {kv} key/value heads of size {c // h}, W_K and W_V are {c} x {kv * c // h} (+ bias), not "
            f"{c} x {c}; the block has {expected} parameters; got {n}"
        )


@check(points=1)
def test_swiglu(block_parameters):
    """SwiGLU: gate, up and down projections"""
    for c, h, kv, d_ff in _shapes(16900):
        n, what = _count(block_parameters, c, h, kv, d_ff, mlp="swiglu")
        expected = _reference(c, h, kv, d_ff, mlp="swiglu")
        assert n == expected, (
            f"{what}: SwiGLU has three matrices (gate and up C -> d_ff, down d_ff -> C, each with a bias): the block "
            f"has {expected} parameters; got {n}"
        )


@check(points=1)
def test_no_bias(block_parameters):
    """bias=False: no linear biases, LayerNorm keeps only its gain"""
    for c, h, kv, d_ff in _shapes(17000):
        n, what = _count(block_parameters, c, h, kv, d_ff, bias=False)
        expected = _reference(c, h, kv, d_ff, bias=False)
        assert n == expected, (
            f"{what}: without biases only the weight matrices and the two LayerNorm gains remain: {expected}; got {n}"
        )


@check(points=1)
def test_rms_norm(block_parameters):
    """norm="rms": each norm has a gain only (whatever bias says)"""
    for c, h, kv, d_ff in _shapes(17100):
        n, what = _count(block_parameters, c, h, kv, d_ff, norm="rms")
        expected = _reference(c, h, kv, d_ff, norm="rms")
        assert n == expected, (
            f"{what}: RMSNorm has no bias (it does not subtract a mean), so each norm has {c} parameters: the block "
            f"has {expected}; got {n}"
        )
