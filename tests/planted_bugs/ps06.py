"""Planted realistic bugs in ps06_feedforward: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_gelu_tanh_approximation": ("gelu", """
def gelu(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
""", {"test_exact_form"}),
    "bug_gelu_erf_without_sqrt2": ("gelu", """
def gelu(x):
    return 0.5 * x * (1 + torch.erf(x))
""", {"test_close_to_gelu", "test_exact_form"}),
    "bug_gelu_sigmoid_missing_1702": ("gelu", """
def gelu(x):
    return x * torch.sigmoid(x)
""", {"test_close_to_gelu", "test_exact_form"}),
    "bug_ffn_missing_activation": ("ffn_forward", """
def ffn_forward(x, w1, b1, w2, b2):
    return (x @ w1 + b1) @ w2 + b2
""", {"test_nonlinear", "test_matches_reference"}),
    "bug_ffn_activation_after_output": ("ffn_forward", """
def ffn_forward(x, w1, b1, w2, b2):
    return gelu((x @ w1 + b1) @ w2 + b2)
""", {"test_matches_reference"}),
    "bug_ffn_bias_after_activation": ("ffn_forward", """
def ffn_forward(x, w1, b1, w2, b2):
    return (gelu(x @ w1) + b1) @ w2 + b2
""", {"test_matches_reference"}),
    "bug_swiglu_gate_and_up_swapped": ("swiglu_forward", """
def swiglu_forward(x, w_gate, w_up, w_down):
    up = x @ w_up
    return (up * torch.sigmoid(up) * (x @ w_gate)) @ w_down
""", {"test_matches_reference", "test_linear_in_up_branch"}),
    "bug_swiglu_sigmoid_gate": ("swiglu_forward", """
def swiglu_forward(x, w_gate, w_up, w_down):
    return (torch.sigmoid(x @ w_gate) * (x @ w_up)) @ w_down
""", {"test_matches_reference", "test_zero_gate"}),
    "bug_swiglu_no_silu": ("swiglu_forward", """
def swiglu_forward(x, w_gate, w_up, w_down):
    return ((x @ w_gate) * (x @ w_up)) @ w_down
""", {"test_matches_reference"}),
    "bug_hidden_size_rounds_down": ("swiglu_hidden_size", """
def swiglu_hidden_size(d_model, multiple_of=8):
    return multiple_of * (int(8 * d_model / 3) // multiple_of)
""", {"test_rounds_up", "test_multiple_of"}),
    "bug_hidden_size_ignores_multiple_of": ("swiglu_hidden_size", """
def swiglu_hidden_size(d_model, multiple_of=8):
    return 8 * math.ceil(8 * d_model / 3 / 8)
""", {"test_multiple_of"}),
    "bug_collapse_wrong_order": ("collapse_linear", """
def collapse_linear(weights, biases):
    w, b = weights[0], biases[0]
    for w_i, b_i in zip(weights[1:], biases[1:]):
        w, b = w @ w_i, w_i @ b + b_i
    return w, b
""", {"test_shape", "test_order"}),
    "bug_collapse_only_last_bias": ("collapse_linear", """
def collapse_linear(weights, biases):
    w = weights[0]
    for w_i in weights[1:]:
        w = w_i @ w
    return w, biases[-1]
""", {"test_bias"}),
}

# Bugs only the second edition's checks catch (issue 14): gradients that do not flow.
BUGS.update({
    "bug_gelu_gate_without_grad": ("gelu", """
def gelu(x):
    with torch.no_grad():
        phi = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    return x * phi
""", {"test_gradient"}),
    "bug_swiglu_gate_detached": ("swiglu_forward", """
def swiglu_forward(x, w_gate, w_up, w_down):
    a = x @ w_gate
    gate = (a * torch.sigmoid(a)).detach()
    return (gate * (x @ w_up)) @ w_down
""", {"test_gradient"}),
})
