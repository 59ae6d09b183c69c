"""Hidden checks for ps01 `rnn_step(x, h, W_ih, W_hh, b_ih, b_hh)`, against `torch.nn.RNNCell` with the same
weights copied in, in float64.

One property per check: the shape, the tanh of the weighted sum (biases zero), both biases.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow
from mastering_transformers.grading.kit import largest


def _case(seed: int, b: int, c: int, hidden: int, bias: bool = True) -> tuple[torch.Tensor, ...]:
    """x (B, C), h (B, H), W_ih (H, C), W_hh (H, H), b_ih (H,), b_hh (H,), in float64."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    x, h = randn(b, c), torch.tanh(randn(b, hidden))  # a state of a tanh RNN lies in (-1, 1)
    W_ih, W_hh = randn(hidden, c) / c ** 0.5, randn(hidden, hidden) / hidden ** 0.5
    b_ih = randn(hidden) if bias else torch.zeros(hidden, dtype=torch.float64)
    b_hh = randn(hidden) if bias else torch.zeros(hidden, dtype=torch.float64)
    return x, h, W_ih, W_hh, b_ih, b_hh


def _reference(x, h, W_ih, W_hh, b_ih, b_hh) -> torch.Tensor:
    cell = torch.nn.RNNCell(x.shape[-1], h.shape[-1], dtype=torch.float64)
    with torch.no_grad():
        for name, value in [("weight_ih", W_ih), ("weight_hh", W_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)]:
            getattr(cell, name).copy_(value)
        return cell(x, h)


def _step(rnn_step, *args) -> torch.Tensor:
    out = rnn_step(*args)
    assert isinstance(out, torch.Tensor), f"rnn_step must return the new state, a tensor; got {type(out).__name__}"
    x, h = args[0], args[1]
    assert tuple(out.shape) == tuple(h.shape), (
        f"for x {tuple(x.shape)} and h {tuple(h.shape)} the new state must have the shape of h, (B, H) = "
        f"{tuple(h.shape)}; got {tuple(out.shape)}"
    )
    return out


def _error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return largest(out.double() - reference)


@check(points=1)
def test_shape(rnn_step):
    """shape: x (B, C), h (B, H) -> new h (B, H)"""
    for seed, b, c, hidden in [(1101, 3, 5, 4), (1102, 1, 2, 7), (1103, 6, 9, 3)]:
        _step(rnn_step, *_case(seed, b, c, hidden))


@check(points=1)
def test_tanh_of_weighted_sum(rnn_step):
    """tanh(x W_ih^T + h W_hh^T) matches torch.nn.RNNCell (biases zero)"""
    for seed, b, c, hidden in [(1201, 4, 6, 5), (1202, 2, 3, 8)]:
        args = _case(seed, b, c, hidden, bias=False)
        error = _error(_step(rnn_step, *args), _reference(*args))
        assert error < 1e-6, (
            f"with zero biases the new state must be tanh(x @ W_ih.T + h @ W_hh.T); max error {error:.2g} against "
            f"torch.nn.RNNCell for B={b}, C={c}, H={hidden}: check the transposes and the tanh"
        )


@check(points=1)
def test_biases(rnn_step):
    """both biases b_ih and b_hh are added, as in torch.nn.RNNCell"""
    for seed, b, c, hidden in [(1301, 5, 4, 6), (1302, 3, 7, 2)]:
        args = _case(seed, b, c, hidden, bias=True)
        error = _error(_step(rnn_step, *args), _reference(*args))
        assert error < 1e-6, (
            f"with nonzero biases the new state must be tanh(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh); max error "
            f"{error:.2g} against torch.nn.RNNCell: add both biases inside the tanh"
        )


@check(points=1)
def test_gradient(rnn_step):
    """gradients flow to x, h, both weights and both biases (backpropagation through time needs them)"""
    g = torch.Generator().manual_seed(1350)
    cases = []
    for b, c, hidden in [(3, 4, 5), (1, 2, 3)]:
        cases.append((torch.randn(b, c, generator=g, dtype=torch.float64),
                      torch.randn(b, hidden, generator=g, dtype=torch.float64),
                      torch.randn(hidden, c, generator=g, dtype=torch.float64) / c**0.5,
                      torch.randn(hidden, hidden, generator=g, dtype=torch.float64) / hidden**0.5,
                      torch.randn(hidden, generator=g, dtype=torch.float64),
                      torch.randn(hidden, generator=g, dtype=torch.float64)))
    assert_gradients_flow(rnn_step, cases, wrt=(0, 1, 2, 3, 4, 5), what="rnn_step", seed=1351)
