"""Planted realistic bugs in ps15_interpretability: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_prev_above_diagonal": ("previous_token_score", """
def previous_token_score(weights):
    return weights.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1)
""", {"test_values", "test_closed_forms"}),
    "bug_prev_divides_by_T": ("previous_token_score", """
def previous_token_score(weights):
    t = weights.shape[-1]
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1) / t
""", {"test_values", "test_closed_forms"}),
    "bug_induction_duplicate_token": ("induction_score", """
def induction_score(weights, period):
    return weights.diagonal(offset=-period, dim1=-2, dim2=-1).mean(-1)
""", {"test_values", "test_target_key", "test_second_copy_only"}),
    "bug_induction_from_query_P_minus_1": ("induction_score", """
def induction_score(weights, period):
    return weights.diagonal(offset=-(period - 1), dim1=-2, dim2=-1).mean(-1)
""", {"test_values", "test_second_copy_only"}),
    "bug_lens_eps_outside_sqrt": ("logit_lens", """
def logit_lens(resid, norm_weight, unembed, eps=1e-5):
    normed = resid / (resid.pow(2).mean(-1, keepdim=True).sqrt() + eps) * norm_weight
    return normed @ unembed.T
""", {"test_eps"}),
    "bug_lens_layernorm": ("logit_lens", """
def logit_lens(resid, norm_weight, unembed, eps=1e-5):
    centred = resid - resid.mean(-1, keepdim=True)
    normed = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * norm_weight
    return normed @ unembed.T
""", {"test_values", "test_rms_and_weight", "test_eps"}),
    "bug_lens_no_norm_weight": ("logit_lens", """
def logit_lens(resid, norm_weight, unembed, eps=1e-5):
    normed = resid * torch.rsqrt(resid.pow(2).mean(-1, keepdim=True) + eps)
    return normed @ unembed.T
""", {"test_rms_and_weight", "test_eps"}),
    "bug_ablate_interleaved_features": ("ablate_head", """
def ablate_head(merged, head, n_head):
    out = merged.clone()
    out[..., head::n_head] = 0
    return out
""", {"test_head_zeroed", "test_others_unchanged"}),
    "bug_ablate_in_place": ("ablate_head", """
def ablate_head(merged, head, n_head):
    d = merged.shape[-1] // n_head
    merged[..., head * d:(head + 1) * d] = 0
    return merged
""", {"test_shape_dtype", "test_head_zeroed", "test_others_unchanged"}),
    "bug_backward_no_rowsum": ("attention_backward", """
def attention_backward(q, k, v, d_out, causal=False):
    s = 1.0 / math.sqrt(q.shape[-1])
    scores = s * q @ k.transpose(-2, -1)
    if causal:
        t = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    p = torch.softmax(scores, dim=-1)
    dv = p.transpose(-2, -1) @ d_out
    ds = p * (d_out @ v.transpose(-2, -1))
    return s * ds @ k, s * ds.transpose(-2, -1) @ q, dv
""", {"test_dq", "test_dq_causal", "test_dk", "test_dk_causal"}),
    "bug_backward_mask_forgotten": ("attention_backward", """
def attention_backward(q, k, v, d_out, causal=False):
    s = 1.0 / math.sqrt(q.shape[-1])
    p = torch.softmax(s * q @ k.transpose(-2, -1), dim=-1)
    dv = p.transpose(-2, -1) @ d_out
    dp = d_out @ v.transpose(-2, -1)
    ds = p * (dp - (p * dp).sum(-1, keepdim=True))
    return s * ds @ k, s * ds.transpose(-2, -1) @ q, dv
""", {"test_dv_causal", "test_dq_causal", "test_dk_causal"}),
    "bug_backward_dv_not_transposed": ("attention_backward", """
def attention_backward(q, k, v, d_out, causal=False):
    s = 1.0 / math.sqrt(q.shape[-1])
    scores = s * q @ k.transpose(-2, -1)
    if causal:
        t = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    p = torch.softmax(scores, dim=-1)
    dv = p @ d_out
    dp = d_out @ v.transpose(-2, -1)
    ds = p * (dp - (p * dp).sum(-1, keepdim=True))
    return s * ds @ k, s * ds.transpose(-2, -1) @ q, dv
""", {"test_dv", "test_dv_causal", "test_dq", "test_dk"}),  # T_q != T_k: the product fails, costing every output
    "bug_backward_dk_unscaled": ("attention_backward", """
def attention_backward(q, k, v, d_out, causal=False):
    s = 1.0 / math.sqrt(q.shape[-1])
    scores = s * q @ k.transpose(-2, -1)
    if causal:
        t = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    p = torch.softmax(scores, dim=-1)
    dv = p.transpose(-2, -1) @ d_out
    dp = d_out @ v.transpose(-2, -1)
    ds = p * (dp - (p * dp).sum(-1, keepdim=True))
    return s * ds @ k, ds.transpose(-2, -1) @ q, dv
""", {"test_dk", "test_dk_causal"}),
}
