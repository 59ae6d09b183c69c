"""Planted realistic bugs in ps04_multihead: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_split_view_without_transpose": ("split_heads", """
def split_heads(x, n_head):
    b, t, c = x.shape
    return x.view(b, n_head, t, c // n_head)
""", {"test_head_slices"}),
    "bug_split_interleaved_features": ("split_heads", """
def split_heads(x, n_head):
    b, t, c = x.shape
    return x.view(b, t, c // n_head, n_head).permute(0, 3, 1, 2)
""", {"test_head_slices"}),
    "bug_merge_reshape_without_transpose": ("merge_heads", """
def merge_heads(x):
    b, h, t, d = x.shape
    return x.reshape(b, t, h * d)
""", {"test_concatenates_heads", "test_inverse_of_split"}),
    "bug_merge_wrong_transpose": ("merge_heads", """
def merge_heads(x):
    b, h, t, d = x.shape
    return x.transpose(2, 3).reshape(b, t, h * d)
""", {"test_concatenates_heads", "test_inverse_of_split"}),
    "bug_mha_scale_by_d_model": ("mha_forward", """
def mha_forward(x, w_q, w_k, w_v, w_o, n_head, causal=False):
    t, c = x.shape[1], x.shape[2]
    q, k, v = split_heads(x @ w_q, n_head), split_heads(x @ w_k, n_head), split_heads(x @ w_v, n_head)
    scores = q @ k.transpose(-2, -1) / math.sqrt(c)
    if causal:
        scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    return merge_heads(torch.softmax(scores, dim=-1) @ v) @ w_o
""", {"test_matches_reference", "test_causal"}),
    "bug_mha_causal_mask_upper_triangle": ("mha_forward", """
def mha_forward(x, w_q, w_k, w_v, w_o, n_head, causal=False):
    t, c = x.shape[1], x.shape[2]
    q, k, v = split_heads(x @ w_q, n_head), split_heads(x @ w_k, n_head), split_heads(x @ w_v, n_head)
    scores = q @ k.transpose(-2, -1) / math.sqrt(c // n_head)
    if causal:
        scores = scores.masked_fill(torch.ones(t, t).triu() == 0, float("-inf"))
    return merge_heads(torch.softmax(scores, dim=-1) @ v) @ w_o
""", {"test_causal"}),
    "bug_mha_forgets_output_projection": ("mha_forward", """
def mha_forward(x, w_q, w_k, w_v, w_o, n_head, causal=False):
    t, c = x.shape[1], x.shape[2]
    q, k, v = split_heads(x @ w_q, n_head), split_heads(x @ w_k, n_head), split_heads(x @ w_v, n_head)
    scores = q @ k.transpose(-2, -1) / math.sqrt(c // n_head)
    if causal:
        scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    return merge_heads(torch.softmax(scores, dim=-1) @ v)
""", {"test_single_head", "test_matches_reference", "test_causal"}),
    "bug_params_forget_biases": ("mha_param_count", """
def mha_param_count(d_model, n_head, bias=True, n_kv_head=None):
    n_kv_head = n_head if n_kv_head is None else n_kv_head
    if d_model % n_head or n_head % n_kv_head:
        raise ValueError("n_head must divide d_model and n_kv_head must divide n_head")
    return 2 * d_model * d_model + 2 * d_model * n_kv_head * (d_model // n_head)
""", {"test_with_bias", "test_kv_heads"}),
    "bug_params_ignore_kv_heads": ("mha_param_count", """
def mha_param_count(d_model, n_head, bias=True, n_kv_head=None):
    if d_model % n_head:
        raise ValueError("n_head must divide d_model")
    if n_kv_head is not None and n_head % n_kv_head:
        raise ValueError("n_kv_head must divide n_head")
    return 4 * d_model * d_model + (4 * d_model if bias else 0)
""", {"test_kv_heads"}),
    "bug_params_no_validation": ("mha_param_count", """
def mha_param_count(d_model, n_head, bias=True, n_kv_head=None):
    n_kv_head = n_head if n_kv_head is None else n_kv_head
    d_kv = n_kv_head * (d_model // n_head)
    return 2 * d_model * d_model + 2 * d_model * d_kv + (2 * d_model + 2 * d_kv if bias else 0)
""", {"test_rejects_bad_head_counts"}),
    "bug_cache_keys_only": ("kv_cache_bytes", """
def kv_cache_bytes(n_layer, n_kv_head, d_head, seq_len, batch_size=1, bytes_per_number=2):
    return n_layer * batch_size * seq_len * n_kv_head * d_head * bytes_per_number
""", {"test_keys_and_values"}),
    "bug_cache_ignores_batch": ("kv_cache_bytes", """
def kv_cache_bytes(n_layer, n_kv_head, d_head, seq_len, batch_size=1, bytes_per_number=2):
    return n_layer * seq_len * 2 * n_kv_head * d_head * bytes_per_number
""", {"test_batch"}),
}

# Bugs only the second edition's checks catch (issue 14): crossed arguments, return types, defaults.
BUGS.update({
    "bug_params_kv_bias_full_width": ("mha_param_count", """
def mha_param_count(d_model, n_head, bias=True, n_kv_head=None):
    n_kv_head = n_head if n_kv_head is None else n_kv_head
    if d_model % n_head or n_head % n_kv_head:
        raise ValueError("n_head must divide d_model and n_kv_head must divide n_head")
    d_kv = n_kv_head * (d_model // n_head)
    weights = 2 * d_model * d_model + 2 * d_model * d_kv
    return weights + (4 * d_model if bias else 0)
""", {"test_kv_heads"}),
    "bug_params_float": ("mha_param_count", """
def mha_param_count(d_model, n_head, bias=True, n_kv_head=None):
    n_kv_head = n_head if n_kv_head is None else n_kv_head
    if d_model % n_head or n_head % n_kv_head:
        raise ValueError("n_head must divide d_model and n_kv_head must divide n_head")
    d_kv = n_kv_head * d_model / n_head
    return 2 * (d_model * d_model + d_model * d_kv) + ((2 * d_model + 2 * d_kv) if bias else 0)
""", {"test_returns_int"}),
    "bug_kv_default_float32": ("kv_cache_bytes", """
def kv_cache_bytes(n_layer, n_kv_head, d_head, seq_len, batch_size=1, bytes_per_number=4):
    return n_layer * batch_size * seq_len * 2 * n_kv_head * d_head * bytes_per_number
""", {"test_defaults"}),
    "bug_merge_squeeze": ("merge_heads", """
def merge_heads(x):
    return torch.cat([x[:, i] for i in range(x.shape[1])], dim=-1).squeeze()
""", {"test_shape"}),
})
