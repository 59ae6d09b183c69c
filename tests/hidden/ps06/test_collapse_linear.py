"""Hidden checks for ps06 `collapse_linear(weights, biases)`: the single affine map (W, b) equal to a stack of
linear layers, checked against running the stack itself (x -> x W_i^T + b_i, layer by layer) in float64.

One property per check: the shape of W, the order of the product, the collapsed bias, a single layer.
"""

import torch

from mastering_transformers.grading import check


def _stack(seed: int, widths: list[int], zero_bias: bool = False):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o, i, generator=g, dtype=torch.float64) / i**0.5 for i, o in zip(widths, widths[1:])]
    biases = [torch.zeros(o, dtype=torch.float64) if zero_bias else torch.randn(o, generator=g, dtype=torch.float64)
              for o in widths[1:]]
    return weights, biases


def _run(weights, biases, x):
    for w, b in zip(weights, biases):
        x = x @ w.T + b
    return x


def _call(collapse_linear, weights, biases):
    result = collapse_linear(list(weights), list(biases))
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"collapse_linear must return a pair (W, b); got {type(result).__name__}"
    )
    w, b = result
    assert isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor), "W and b must be tensors"
    return w.double(), b.double()


@check(points=1)
def test_shape(collapse_linear):
    """W has shape (out of the last layer, in of the first), b (out,)"""
    for seed, widths in [(6901, [5, 7, 3]), (6902, [2, 9, 4, 6]), (6903, [8, 3, 3, 3, 1])]:
        w, b = _call(collapse_linear, *_stack(seed, widths))
        assert tuple(w.shape) == (widths[-1], widths[0]), (
            f"for layers of widths {widths} (weights of shapes "
            f"{[(o, i) for i, o in zip(widths, widths[1:])]}) W must have shape {(widths[-1], widths[0])}; got {tuple(w.shape)}"
        )
        assert tuple(b.shape) == (widths[-1],), f"b must have shape ({widths[-1]},); got {tuple(b.shape)}"


@check(points=1)
def test_order(collapse_linear):
    """W = W_L ... W_2 W_1: the first layer is the rightmost factor"""
    for seed, depth in [(7001, 2), (7002, 4)]:
        weights, biases = _stack(seed, [5] * (depth + 1), zero_bias=True)
        w, _ = _call(collapse_linear, weights, biases)
        x = torch.randn(10, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        error = float((x @ w.T - _run(weights, biases, x)).abs().nan_to_num(float("inf")).max())
        assert error < 1e-9, (
            f"x @ W.T must equal running the {depth} square layers one after the other (max error {error:.2g}): "
            "the first layer applied is the rightmost factor, W = W_L @ ... @ W_2 @ W_1"
        )


@check(points=1)
def test_bias(collapse_linear):
    """b collapses the biases: b = b_L + W_L b_(L-1) + W_L W_(L-1) b_(L-2) + ..."""
    for seed, depth in [(7101, 2), (7102, 3)]:
        weights, biases = _stack(seed, [4] * (depth + 1))
        _, b = _call(collapse_linear, weights, biases)
        expected = _run(weights, biases, torch.zeros(1, 4, dtype=torch.float64))[0]  # the stack's output at x = 0
        error = float((b - expected).abs().nan_to_num(float("inf")).max())
        assert error < 1e-9, (
            f"b must be the stack's output at x = 0: each bias passes through every later layer's weight "
            f"(b <- W_i b + b_i, layer by layer); max error {error:.2g} for {depth} layers"
        )


@check(points=1)
def test_single_layer(collapse_linear):
    """one layer collapses to itself"""
    weights, biases = _stack(7201, [6, 3])
    w, b = _call(collapse_linear, weights, biases)
    error = max(float((w - weights[0]).abs().max()), float((b - biases[0]).abs().max()))
    assert error < 1e-12, f"a stack of one layer (W_1, b_1) must collapse to (W_1, b_1) itself; max error {error:.2g}"
