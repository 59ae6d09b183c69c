"""Hidden checks for ps01 `bptt_grad(h, W_hh, grad_T)`, against autograd through an unrolled tanh RNN, in
float64.

A random tanh RNN runs over a random sequence; the loss is L = sum(grad_T * h_T), so dL/dh_T = grad_T, and
autograd gives dL/dh_t at every step. The student's function gets only the states, W_hh and grad_T. Every step
is compared with its own relative error, so a mistake at an early step, where the gradient is small, still counts.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import largest


def _unrolled(seed: int, b: int, t: int, c: int, hidden: int, gain: float = 1.5):
    """States h (B, T, H) of a random tanh RNN, W_hh (H, H), grad_T (B, H) and autograd's dL/dh (B, T, H)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    x, W_ih, b_ih = randn(b, t, c), randn(hidden, c) / c ** 0.5, 0.1 * randn(hidden)
    W_hh = gain * randn(hidden, hidden) / hidden ** 0.5  # a gain > 1 keeps the gradients from vanishing fast
    grad_T = randn(b, hidden)
    state, states = torch.zeros(b, hidden, dtype=torch.float64), []
    with torch.enable_grad():
        W_hh.requires_grad_(True)
        for step in range(t):
            state = torch.tanh(x[:, step] @ W_ih.T + b_ih + state @ W_hh.T)
            state.retain_grad()
            states.append(state)
        (states[-1] * grad_T).sum().backward()
    h = torch.stack([s.detach() for s in states], dim=1)
    reference = torch.stack([s.grad for s in states], dim=1)
    return h, W_hh.detach(), grad_T, reference


def _grads(bptt_grad, h, W_hh, grad_T) -> torch.Tensor:
    out = bptt_grad(h.clone(), W_hh.clone(), grad_T.clone())
    assert isinstance(out, torch.Tensor), f"bptt_grad must return a tensor; got {type(out).__name__}"
    assert tuple(out.shape) == tuple(h.shape), (
        f"for states h of shape (B, T, H) = {tuple(h.shape)} the gradients must have the same shape; "
        f"got {tuple(out.shape)}"
    )
    return out.double()


def _relative_errors(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Relative error at each step t, over the batch and hidden units: (T,)."""
    diff = (out - reference).nan_to_num(nan=float("inf")).norm(dim=(0, 2))
    return diff / reference.norm(dim=(0, 2))


@check(points=1)
def test_shape_and_start(bptt_grad):
    """shape (B, T, H), and the last step is dL/dh_T = grad_T itself"""
    for seed, b, t, c, hidden in [(1801, 3, 5, 4, 6), (1802, 1, 2, 3, 4), (1803, 4, 7, 2, 3)]:
        h, W_hh, grad_T, _ = _unrolled(seed, b, t, c, hidden)
        out = _grads(bptt_grad, h, W_hh, grad_T)
        error = largest(out[:, -1] - grad_T)
        assert error < 1e-12, (
            f"the last step of the result, [:, -1], must be grad_T itself (L depends on h_T directly); "
            f"max error {error:.2g}"
        )


@check(points=1)
def test_one_step_back(bptt_grad):
    """one step back: dL/dh_{T-1} = (grad_T * (1 - h_T^2)) @ W_hh matches autograd"""
    for seed, b, t, c, hidden in [(1901, 3, 4, 5, 6), (1902, 2, 6, 3, 5)]:
        h, W_hh, grad_T, reference = _unrolled(seed, b, t, c, hidden)
        error = float(_relative_errors(_grads(bptt_grad, h, W_hh, grad_T), reference)[-2])
        assert error < 1e-8, (
            f"dL/dh_(T-1), the result's [:, -2], differs from autograd's by {error:.2g} (relative): one step of "
            "the chain rule multiplies by the Jacobian diag(1 - h_T^2) W_hh, i.e. (g * (1 - h[:, -1]**2)) @ W_hh, "
            "with the derivative of tanh taken at the LATER state"
        )


@check(points=1)
def test_all_steps(bptt_grad):
    """every step back to h_1 matches autograd (backpropagation through time)"""
    for seed, b, t, c, hidden in [(2001, 3, 9, 4, 5), (2002, 2, 12, 3, 8)]:
        h, W_hh, grad_T, reference = _unrolled(seed, b, t, c, hidden)
        errors = _relative_errors(_grads(bptt_grad, h, W_hh, grad_T), reference)
        worst = int(errors.argmax())
        assert float(errors.max()) < 1e-8, (
            f"over T = {t} steps, the gradient at step index {worst} differs from autograd's by "
            f"{float(errors[worst]):.2g} (relative): apply one Jacobian per step, from the last step back to the first"
        )
