"""Planted realistic bugs in ps08_encoder_decoder: name -> (function, buggy answer cell, the checks it must fail)."""

_CROSS_HEAD = """
def cross_attention(x_dec, enc, w_q, w_k, w_v, w_o, n_head, src_lengths=None):
    b, t, c = x_dec.shape
    s = enc.shape[1]
    d = c // n_head

    def split(h):
        return h.view(h.shape[0], h.shape[1], n_head, d).transpose(1, 2)
"""

_CROSS_TAIL = """
    weights = torch.softmax(scores, dim=-1)
    y = (weights @ v).transpose(1, 2).reshape(b, t, c)
    return y @ w_o
"""

_CROSS_MASK = """
    if src_lengths is not None:
        scores = scores.masked_fill(~padding_mask(src_lengths, s), float("-inf"))
"""

_MEAN_HEAD = """
def mean_pool(h, lengths):
    t = h.shape[1]
"""

_POOL_HEAD = """
def attention_pool(h, lengths, query):
    t, c = h.shape[1], h.shape[2]
    keep = torch.arange(t)[None, :] < lengths[:, None]
"""

BUGS = {
    # -- padding_mask -------------------------------------------------------------------------------------------
    "bug_padding_mask_inverted": ("padding_mask", """
def padding_mask(lengths, T):
    pad = torch.arange(T)[None, :] >= lengths[:, None]  # True = padding, to be blocked
    return pad[:, None, None, :]
""", {"test_real_tokens", "test_padding_blocked"}),
    "bug_padding_mask_off_by_one": ("padding_mask", """
def padding_mask(lengths, T):
    keep = torch.arange(T)[None, :] <= lengths[:, None]
    return keep[:, None, None, :]
""", {"test_padding_blocked"}),
    "bug_padding_mask_without_singleton_dims": ("padding_mask", """
def padding_mask(lengths, T):
    return torch.arange(T)[None, :] < lengths[:, None]  # (B, T): "it broadcasts anyway"
""", {"test_bool_shape"}),
    # -- combined_mask ------------------------------------------------------------------------------------------
    "bug_combined_diagonal_removed": ("combined_mask", """
def combined_mask(lengths, T):
    causal = torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)  # "t sees only 1 .. t-1"
    return causal & padding_mask(lengths, T)
""", {"test_diagonal"}),
    "bug_combined_padding_on_queries": ("combined_mask", """
def combined_mask(lengths, T):
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    real_query = (torch.arange(T)[None, :] < lengths[:, None])[:, None, :, None]  # (B, 1, T, 1): rows
    return causal & real_query
""", {"test_padding_queries"}),
    "bug_combined_or_instead_of_and": ("combined_mask", """
def combined_mask(lengths, T):
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return causal | padding_mask(lengths, T)
""", {"test_causal", "test_padding_keys", "test_padding_queries"}),
    # -- cross_attention ----------------------------------------------------------------------------------------
    "bug_cross_keys_values_from_decoder": ("cross_attention", _CROSS_HEAD + """
    q, k, v = split(x_dec @ w_q), split(x_dec @ w_k), split(x_dec @ w_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
""" + _CROSS_TAIL, {"test_values_from_encoder", "test_single_head", "test_heads", "test_source_padding"}),
    "bug_cross_no_scale": ("cross_attention", _CROSS_HEAD + """
    q, k, v = split(x_dec @ w_q), split(enc @ w_k), split(enc @ w_v)
    scores = q @ k.transpose(-2, -1)
""" + _CROSS_MASK + _CROSS_TAIL, {"test_single_head", "test_heads", "test_source_padding"}),
    "bug_cross_scale_by_model_width": ("cross_attention", _CROSS_HEAD + """
    q, k, v = split(x_dec @ w_q), split(enc @ w_k), split(enc @ w_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(c)
""" + _CROSS_MASK + _CROSS_TAIL, {"test_heads", "test_source_padding"}),
    "bug_cross_heads_reshape_without_transpose": ("cross_attention", """
def cross_attention(x_dec, enc, w_q, w_k, w_v, w_o, n_head, src_lengths=None):
    b, t, c = x_dec.shape
    s = enc.shape[1]
    d = c // n_head
    q = (x_dec @ w_q).reshape(b, n_head, t, d)
    k, v = (enc @ w_k).reshape(b, n_head, s, d), (enc @ w_v).reshape(b, n_head, s, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
""" + _CROSS_MASK + """
    weights = torch.softmax(scores, dim=-1)
    return (weights @ v).reshape(b, t, c) @ w_o
""", {"test_values_from_encoder", "test_heads", "test_source_padding"}),
    "bug_cross_softmax_over_queries": ("cross_attention", _CROSS_HEAD + """
    q, k, v = split(x_dec @ w_q), split(enc @ w_k), split(enc @ w_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
""" + _CROSS_MASK + """
    weights = torch.softmax(scores, dim=-2)
    y = (weights @ v).transpose(1, 2).reshape(b, t, c)
    return y @ w_o
""", {"test_values_from_encoder", "test_single_head", "test_heads", "test_source_padding"}),
    "bug_cross_padding_scores_zeroed": ("cross_attention", _CROSS_HEAD + """
    q, k, v = split(x_dec @ w_q), split(enc @ w_k), split(enc @ w_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if src_lengths is not None:
        scores = scores.masked_fill(~padding_mask(src_lengths, s), 0.0)
""" + _CROSS_TAIL, {"test_source_padding"}),
    "bug_cross_memory_detached": ("cross_attention", _CROSS_HEAD + """
    enc = enc.detach()  # "the encoder's memory is a constant for the decoder"
    q, k, v = split(x_dec @ w_q), split(enc @ w_k), split(enc @ w_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
""" + _CROSS_MASK + _CROSS_TAIL, {"test_gradient"}),
    # -- mean_pool ----------------------------------------------------------------------------------------------
    "bug_mean_divides_by_T": ("mean_pool", _MEAN_HEAD + """
    keep = (torch.arange(t)[None, :] < lengths[:, None]).to(h.dtype)
    return (h * keep[:, :, None]).sum(dim=1) / t
""", {"test_divides_by_length"}),
    "bug_mean_counts_padding": ("mean_pool", _MEAN_HEAD + """
    return h.sum(dim=1) / lengths[:, None].to(h.dtype)
""", {"test_padding_values_ignored"}),
    "bug_mean_off_by_one": ("mean_pool", _MEAN_HEAD + """
    keep = (torch.arange(t)[None, :] <= lengths[:, None]).to(h.dtype)
    return (h * keep[:, :, None]).sum(dim=1) / lengths[:, None].to(h.dtype)
""", {"test_padding_values_ignored"}),
    "bug_mean_plain_mean": ("mean_pool", _MEAN_HEAD + """
    return h.mean(dim=1)
""", {"test_divides_by_length", "test_padding_values_ignored"}),
    # -- attention_pool -----------------------------------------------------------------------------------------
    "bug_pool_padding_not_masked": ("attention_pool", _POOL_HEAD + """
    weights = torch.softmax(h @ query / math.sqrt(c), dim=-1)
    return (weights[:, :, None] * h).sum(dim=1)
""", {"test_padding"}),
    "bug_pool_no_scale": ("attention_pool", _POOL_HEAD + """
    weights = torch.softmax((h @ query).masked_fill(~keep, float("-inf")), dim=-1)
    return (weights[:, :, None] * h).sum(dim=1)
""", {"test_no_padding", "test_padding"}),
    "bug_pool_softmax_over_batch": ("attention_pool", _POOL_HEAD + """
    weights = torch.softmax((h @ query / math.sqrt(c)).masked_fill(~keep, float("-inf")), dim=0)
    return (weights[:, :, None] * h).sum(dim=1)
""", {"test_no_padding", "test_padding"}),
}
