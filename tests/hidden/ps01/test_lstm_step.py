"""Hidden checks for ps01 `lstm_step(x, h, c, W_ih, W_hh, b_ih, b_hh)`, against `torch.nn.LSTMCell` with the
same weights copied in, in float64.

One property per check: the shapes, the forget gate in its place (block 2 of i, f, g, o), the new cell, the new
hidden state. The forget-gate check opens the forget gate and closes the input gate, so only a gate in the wrong
block can fail it.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow
from mastering_transformers.grading.kit import largest


def _case(seed: int, b: int, c_in: int, hidden: int) -> tuple[torch.Tensor, ...]:
    """x (B, C), h (B, H), c (B, H), W_ih (4H, C), W_hh (4H, H), b_ih (4H,), b_hh (4H,), in float64."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    x, h, c = randn(b, c_in), torch.tanh(randn(b, hidden)), 2 * randn(b, hidden)
    W_ih, W_hh = randn(4 * hidden, c_in) / c_in ** 0.5, randn(4 * hidden, hidden) / hidden ** 0.5
    return x, h, c, W_ih, W_hh, randn(4 * hidden), randn(4 * hidden)


def _reference(x, h, c, W_ih, W_hh, b_ih, b_hh) -> tuple[torch.Tensor, torch.Tensor]:
    cell = torch.nn.LSTMCell(x.shape[-1], h.shape[-1], dtype=torch.float64)
    with torch.no_grad():
        for name, value in [("weight_ih", W_ih), ("weight_hh", W_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)]:
            getattr(cell, name).copy_(value)
        return cell(x, (h, c))


def _step(lstm_step, *args) -> tuple[torch.Tensor, torch.Tensor]:
    result = lstm_step(*args)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"lstm_step must return a pair (new h, new c); got {type(result).__name__}"
    )
    h_new, c_new = result
    assert isinstance(h_new, torch.Tensor) and isinstance(c_new, torch.Tensor), "new h and new c must be tensors"
    h = args[1]
    for name, value in [("new h", h_new), ("new c", c_new)]:
        assert tuple(value.shape) == tuple(h.shape), (
            f"{name} must have shape (B, H) = {tuple(h.shape)}; got {tuple(value.shape)}"
        )
    return h_new, c_new


def _error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return largest(out.double() - reference)


@check(points=1)
def test_shapes(lstm_step):
    """returns (new h, new c), each (B, H)"""
    for seed, b, c_in, hidden in [(1401, 3, 5, 4), (1402, 1, 2, 6), (1403, 7, 8, 3)]:
        _step(lstm_step, *_case(seed, b, c_in, hidden))


@check(points=1)
def test_forget_gate(lstm_step):
    """an open forget gate and a closed input gate keep the memory: new c = c"""
    for seed, b, c_in, hidden in [(1501, 4, 6, 5), (1502, 2, 3, 7)]:
        x, h, c, W_ih, W_hh, b_ih, b_hh = _case(seed, b, c_in, hidden)
        b_ih = b_ih.clone()
        b_ih[:hidden] = -40.0  # block 0, the input gate i: sigmoid(-40) = 0, closed
        b_ih[hidden:2 * hidden] = 40.0  # block 1, the forget gate f: sigmoid(40) = 1, open
        _, c_new = _step(lstm_step, x, h, c, W_ih, W_hh, b_ih, b_hh)
        error = _error(c_new, c)
        assert error < 1e-6, (
            f"with the forget gate (rows H..2H-1) wide open and the input gate (rows 0..H-1) closed, the new cell "
            f"must equal the old one; max error {error:.2g}: split the gates in torch's order i, f, g, o"
        )


@check(points=1)
def test_new_cell(lstm_step):
    """new c = sigmoid(f) * c + sigmoid(i) * tanh(g) matches torch.nn.LSTMCell"""
    for seed, b, c_in, hidden in [(1601, 4, 6, 5), (1602, 3, 2, 8)]:
        args = _case(seed, b, c_in, hidden)
        _, c_new = _step(lstm_step, *args)
        error = _error(c_new, _reference(*args)[1])
        assert error < 1e-6, (
            f"the new cell differs from torch.nn.LSTMCell's by up to {error:.2g}: it is sigmoid(f) * c + "
            "sigmoid(i) * tanh(g), gates in the order i, f, g, o"
        )


@check(points=1)
def test_new_hidden(lstm_step):
    """new h = sigmoid(o) * tanh(new c) matches torch.nn.LSTMCell"""
    for seed, b, c_in, hidden in [(1701, 4, 6, 5), (1702, 3, 2, 8)]:
        args = _case(seed, b, c_in, hidden)
        h_new, _ = _step(lstm_step, *args)
        error = _error(h_new, _reference(*args)[0])
        assert error < 1e-6, (
            f"the new hidden state differs from torch.nn.LSTMCell's by up to {error:.2g}: it is sigmoid(o) * "
            "tanh(new c), computed from the updated cell"
        )


@check(points=1)
def test_gradient(lstm_step):
    """gradients flow to x, h, c, both weights and both biases, through both outputs"""
    g = torch.Generator().manual_seed(1750)
    cases = []
    for b, c_in, hidden in [(3, 4, 5), (1, 2, 3)]:
        cases.append((torch.randn(b, c_in, generator=g, dtype=torch.float64),
                      torch.randn(b, hidden, generator=g, dtype=torch.float64),
                      torch.randn(b, hidden, generator=g, dtype=torch.float64),
                      torch.randn(4 * hidden, c_in, generator=g, dtype=torch.float64) / c_in**0.5,
                      torch.randn(4 * hidden, hidden, generator=g, dtype=torch.float64) / hidden**0.5,
                      torch.randn(4 * hidden, generator=g, dtype=torch.float64),
                      torch.randn(4 * hidden, generator=g, dtype=torch.float64)))
    assert_gradients_flow(lstm_step, cases, wrt=(0, 1, 2, 3, 4, 5, 6), what="lstm_step", seed=1751)
