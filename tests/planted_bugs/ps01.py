"""Planted realistic bugs in ps01_sequences: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_rnn_relu": ("rnn_step", """
def rnn_step(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.relu(x @ W_ih.T + b_ih + h @ W_hh.T + b_hh)
""", {"test_tanh_of_weighted_sum", "test_biases"}),
    "bug_rnn_missing_b_hh": ("rnn_step", """
def rnn_step(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + h @ W_hh.T)
""", {"test_biases"}),
    "bug_lstm_input_and_forget_swapped": ("lstm_step", """
def lstm_step(x, h, c, W_ih, W_hh, b_ih, b_hh):
    f, i, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    return h_new, c_new
""", {"test_forget_gate", "test_new_cell", "test_new_hidden"}),
    "bug_lstm_sigmoid_on_g": ("lstm_step", """
def lstm_step(x, h, c, W_ih, W_hh, b_ih, b_hh):
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.sigmoid(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    return h_new, c_new
""", {"test_new_cell", "test_new_hidden"}),
    "bug_lstm_h_from_old_cell": ("lstm_step", """
def lstm_step(x, h, c, W_ih, W_hh, b_ih, b_hh):
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    h_new = torch.sigmoid(o) * torch.tanh(c)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return h_new, c_new
""", {"test_new_hidden"}),
    "bug_bptt_tanh_derivative_at_earlier_state": ("bptt_grad", """
def bptt_grad(h, W_hh, grad_T):
    grads = [grad_T]
    for t in range(h.shape[1] - 1, 0, -1):
        grads.append((grads[-1] * (1 - h[:, t - 1] ** 2)) @ W_hh)
    return torch.stack(grads[::-1], dim=1)
""", {"test_one_step_back", "test_all_steps"}),
    "bug_bptt_stops_one_step_early": ("bptt_grad", """
def bptt_grad(h, W_hh, grad_T):
    grads = torch.zeros_like(h)
    grads[:, -1] = grad_T
    for t in range(h.shape[1] - 1, 1, -1):
        grads[:, t - 1] = (grads[:, t] * (1 - h[:, t] ** 2)) @ W_hh
    return grads
""", {"test_all_steps"}),
    "bug_additive_no_tanh": ("additive_scores", """
def additive_scores(s, h, W_s, W_h, v):
    return ((s @ W_s.T)[:, None, :] + h @ W_h.T) @ v
""", {"test_formula", "test_bounded"}),
    "bug_attention_softmax_over_batch": ("additive_attention", """
def additive_attention(s, h, W_s, W_h, v, mask=None):
    scores = additive_scores(s, h, W_s, W_h, v)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=0)
    return (weights[:, :, None] * h).sum(dim=1), weights
""", {"test_weights_are_distributions", "test_matches_reference", "test_mask"}),
    "bug_attention_mask_after_softmax": ("additive_attention", """
def additive_attention(s, h, W_s, W_h, v, mask=None):
    weights = torch.softmax(additive_scores(s, h, W_s, W_h, v), dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return (weights[:, :, None] * h).sum(dim=1), weights
""", {"test_mask"}),
}

# Bugs only the second edition's checks catch (issue 14): gradients that do not flow.
BUGS.update({
    "bug_rnn_state_detached": ("rnn_step", """
def rnn_step(x, h, W_ih, W_hh, b_ih, b_hh):
    return torch.tanh(x @ W_ih.T + b_ih + h.detach() @ W_hh.T + b_hh)
""", {"test_gradient"}),
    "bug_lstm_cell_detached": ("lstm_step", """
def lstm_step(x, h, c, W_ih, W_hh, b_ih, b_hh):
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c.detach() + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new
""", {"test_gradient"}),
    "bug_scores_through_numpy": ("additive_scores", """
import numpy as np


def additive_scores(s, h, W_s, W_h, v):
    e = np.tanh((s @ W_s.T).detach().numpy()[:, None, :] + (h @ W_h.T).detach().numpy()) @ v.detach().numpy()
    return torch.from_numpy(e)
""", {"test_gradient"}),
})
