"""Hidden checks for ps10 `gpt_param_count(vocab_size, block_size, n_layer, n_embd, tie_weights=True, bias=True)`,
against the parameters of a real GPT-2-style `mt.GPT` of that shape, counted one tensor at a time (built on the
`meta` device: shapes without memory, so even large models cost nothing).

One property per check: the GPT-2 defaults (tied head, biases), what untying the head adds, what bias=False
removes, and every option crossed with every other with a Python int as the result.
"""

import random

import torch

import mastering_transformers as mt
from mastering_transformers.grading import check


def _counted(vocab_size, block_size, n_layer, n_embd, tie_weights=True, bias=True) -> int:
    """Parameters of mt.GPT with learned positions, LayerNorm, GELU MLP (4C), counted tensor by tensor."""
    config = mt.GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1, n_embd=n_embd,
                          tie_weights=tie_weights, bias=bias)
    with torch.device("meta"):
        model = mt.GPT(config)
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied matrix once


def _shapes(seed: int, n: int):
    rng = random.Random(seed)
    return [(rng.randint(2, 300), rng.randint(1, 64), rng.randint(1, 6), rng.randint(1, 48)) for _ in range(n)]


def _call(fn, *args, **kwargs) -> int:
    n = fn(*args, **kwargs)
    assert isinstance(n, int) and not isinstance(n, bool), (
        f"gpt_param_count must return a Python int; got {type(n).__name__} {n!r}"
        + (" (use integer arithmetic: // instead of /, no floats)" if isinstance(n, float) else "")
    )
    return n


def _args(v, t, layers, c):
    return f"vocab_size={v}, block_size={t}, n_layer={layers}, n_embd={c}"


@check(points=1)
def test_gpt2_defaults(gpt_param_count):
    """GPT-2 defaults (tied head, biases): equals the counted parameters of mt.GPT"""
    for v, t, layers, c in [(50257, 1024, 12, 768), *_shapes(10101, 4)]:
        n, expected = _call(gpt_param_count, v, t, layers, c), _counted(v, t, layers, c)
        assert n == expected, (
            f"gpt_param_count({_args(v, t, layers, c)}) with the defaults (tied head, biases) must be {expected:,}; "
            f"got {n:,}: count the token and position tables, per block 4 C x C attention and C -> 4C -> C MLP "
            f"weights with their biases and two LayerNorms (weight and bias), the final LayerNorm, and no "
            f"separate head (it is the token embedding)"
        )


@check(points=1)
def test_untied_head(gpt_param_count):
    """untying the head adds exactly its V x C matrix, with or without biases"""
    for v, t, layers, c in _shapes(10201, 4):
        for bias in (True, False):
            tied = _call(gpt_param_count, v, t, layers, c, True, bias)
            untied = _call(gpt_param_count, v, t, layers, c, False, bias)
            assert untied - tied == v * c, (
                f"for {_args(v, t, layers, c)}, bias={bias}: tie_weights=False must add the head's "
                f"V x C = {v * c:,} weights to the tied count; it added {untied - tied:,}. With a tied head the "
                f"embedding matrix is used twice but stored, and counted, once"
            )


@check(points=1)
def test_no_bias(gpt_param_count):
    """bias=False removes the linear biases and the LayerNorm shifts, nothing else"""
    for v, t, layers, c in _shapes(10301, 4):
        for tie in (True, False):
            saved = _call(gpt_param_count, v, t, layers, c, tie, True) - _call(gpt_param_count, v, t, layers, c,
                                                                                tie, False)
            expected = _counted(v, t, layers, c, tie, True) - _counted(v, t, layers, c, tie, False)
            assert saved == expected, (
                f"for {_args(v, t, layers, c)}, tie_weights={tie}: bias=False must remove {expected:,} parameters; "
                f"your counts differ by {saved:,}. It removes every linear layer's bias and every LayerNorm's "
                f"shift; the LayerNorm gains (weights) stay"
            )


@check(points=1)
def test_crossed(gpt_param_count):
    """every combination of tie_weights and bias, random sizes: the counted parameters, as an int"""
    for v, t, layers, c in _shapes(10401, 5):
        for tie in (True, False):
            for bias in (True, False):
                n = _call(gpt_param_count, v, t, layers, c, tie_weights=tie, bias=bias)
                expected = _counted(v, t, layers, c, tie, bias)
                assert n == expected, (
                    f"gpt_param_count({_args(v, t, layers, c)}, tie_weights={tie}, bias={bias}) must be "
                    f"{expected:,}; got {n:,}"
                )
