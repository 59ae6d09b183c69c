"""Planted realistic bugs in ps16_beyond: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    # -- fit_power_law --------------------------------------------------------------------------------------------
    "bug_fit_log10_coefficient": ("fit_power_law", """
def fit_power_law(x, y):
    u, v = x.log10(), y.log10()
    du, dv = u - u.mean(), v - v.mean()
    sxx = float((du * du).sum())
    b = float((du * dv).sum()) / sxx
    log_a = float(v.mean()) - b * float(u.mean())
    resid = v - log_a - b * u
    s2 = float((resid * resid).sum()) / (len(u) - 2)
    return math.exp(log_a), b, math.sqrt(s2 / sxx)
""", {"test_exact_power_law", "test_least_squares"}),  # the slope and its error do not depend on the base
    "bug_fit_dof_n_minus_1": ("fit_power_law", """
def fit_power_law(x, y):
    u, v = x.log(), y.log()
    du, dv = u - u.mean(), v - v.mean()
    sxx = float((du * du).sum())
    b = float((du * dv).sum()) / sxx
    log_a = float(v.mean()) - b * float(u.mean())
    resid = v - log_a - b * u
    s2 = float((resid * resid).sum()) / (len(u) - 1)
    return math.exp(log_a), b, math.sqrt(s2 / sxx)
""", {"test_stderr"}),
    "bug_fit_returns_tensors": ("fit_power_law", """
def fit_power_law(x, y):
    u, v = x.log(), y.log()
    du, dv = u - u.mean(), v - v.mean()
    sxx = (du * du).sum()
    b = (du * dv).sum() / sxx
    log_a = v.mean() - b * u.mean()
    resid = v - log_a - b * u
    s2 = (resid * resid).sum() / (len(u) - 2)
    return log_a.exp(), b, (s2 / sxx).sqrt()
""", {"test_returns_floats"}),
    # -- chinchilla_budget ----------------------------------------------------------------------------------------
    "bug_budget_forgets_six": ("chinchilla_budget", """
def chinchilla_budget(compute, tokens_per_param=20.0):
    n = math.sqrt(compute / tokens_per_param)
    return n, tokens_per_param * n
""", {"test_spends_the_budget"}),
    "bug_budget_ratio_hard_coded": ("chinchilla_budget", """
def chinchilla_budget(compute, tokens_per_param=20.0):
    n = math.sqrt(compute / (6.0 * 20.0))
    return n, 20.0 * n
""", {"test_other_ratio"}),
    # -- block_parameters -----------------------------------------------------------------------------------------
    "bug_params_gqa_full_kv": ("block_parameters", """
def block_parameters(d_model, n_head, n_kv_head, d_ff, mlp="gelu", bias=True, norm="layer"):
    c = d_model
    def linear(n_in, n_out):
        return n_in * n_out + (n_out if bias else 0)
    attention = 4 * linear(c, c)
    ffn = 2 * linear(c, d_ff) + linear(d_ff, c) if mlp == "swiglu" else linear(c, d_ff) + linear(d_ff, c)
    one_norm = 2 * c if norm == "layer" and bias else c
    return attention + ffn + 2 * one_norm
""", {"test_grouped_query"}),
    "bug_params_swiglu_two_matrices": ("block_parameters", """
def block_parameters(d_model, n_head, n_kv_head, d_ff, mlp="gelu", bias=True, norm="layer"):
    c, kv = d_model, n_kv_head * (d_model // n_head)
    def linear(n_in, n_out):
        return n_in * n_out + (n_out if bias else 0)
    attention = 2 * linear(c, c) + 2 * linear(c, kv)
    ffn = linear(c, d_ff) + linear(d_ff, c)
    one_norm = 2 * c if norm == "layer" and bias else c
    return attention + ffn + 2 * one_norm
""", {"test_swiglu"}),
    "bug_params_rms_with_bias": ("block_parameters", """
def block_parameters(d_model, n_head, n_kv_head, d_ff, mlp="gelu", bias=True, norm="layer"):
    c, kv = d_model, n_kv_head * (d_model // n_head)
    def linear(n_in, n_out):
        return n_in * n_out + (n_out if bias else 0)
    attention = 2 * linear(c, c) + 2 * linear(c, kv)
    ffn = 2 * linear(c, d_ff) + linear(d_ff, c) if mlp == "swiglu" else linear(c, d_ff) + linear(d_ff, c)
    one_norm = 2 * c if bias else c
    return attention + ffn + 2 * one_norm
""", {"test_rms_norm"}),
    "bug_params_layernorm_bias_always": ("block_parameters", """
def block_parameters(d_model, n_head, n_kv_head, d_ff, mlp="gelu", bias=True, norm="layer"):
    c, kv = d_model, n_kv_head * (d_model // n_head)
    def linear(n_in, n_out):
        return n_in * n_out + (n_out if bias else 0)
    attention = 2 * linear(c, c) + 2 * linear(c, kv)
    ffn = 2 * linear(c, d_ff) + linear(d_ff, c) if mlp == "swiglu" else linear(c, d_ff) + linear(d_ff, c)
    one_norm = 2 * c if norm == "layer" else c
    return attention + ffn + 2 * one_norm
""", {"test_no_bias"}),
    # -- mask_prompt_targets --------------------------------------------------------------------------------------
    "bug_mask_off_by_one": ("mask_prompt_targets", """
def mask_prompt_targets(ids, prompt_lengths, lengths, ignore_index=-100):
    pos = torch.arange(ids.shape[1] - 1)  # the target's index in y, not its position in ids
    trained = (pos[None, :] >= prompt_lengths[:, None]) & (pos[None, :] + 1 < lengths[:, None])
    y = torch.where(trained, ids[:, 1:], torch.full_like(ids[:, 1:], ignore_index))
    return ids[:, :-1].clone(), y
""", {"test_prompt_masked"}),
    "bug_mask_keeps_padding": ("mask_prompt_targets", """
def mask_prompt_targets(ids, prompt_lengths, lengths, ignore_index=-100):
    pos = torch.arange(1, ids.shape[1])
    trained = pos[None, :] >= prompt_lengths[:, None]
    y = torch.where(trained, ids[:, 1:], torch.full_like(ids[:, 1:], ignore_index))
    return ids[:, :-1].clone(), y
""", {"test_padding_masked"}),
    "bug_mask_ignore_hard_coded": ("mask_prompt_targets", """
def mask_prompt_targets(ids, prompt_lengths, lengths, ignore_index=-100):
    pos = torch.arange(1, ids.shape[1])
    trained = (pos[None, :] >= prompt_lengths[:, None]) & (pos[None, :] < lengths[:, None])
    y = torch.where(trained, ids[:, 1:], torch.full_like(ids[:, 1:], -100))
    return ids[:, :-1].clone(), y
""", {"test_other_ignore_index"}),
    # -- lora_forward ---------------------------------------------------------------------------------------------
    "bug_lora_scale_alpha_only": ("lora_forward", """
def lora_forward(x, weight, bias, lora_A, lora_B, alpha):
    y = x @ weight.T + alpha * (x @ lora_A.T) @ lora_B.T
    return y if bias is None else y + bias
""", {"test_matches_merged_weight", "test_scale"}),  # alpha = r gives the update r times too large
    "bug_lora_bias_none_crashes": ("lora_forward", """
def lora_forward(x, weight, bias, lora_A, lora_B, alpha):
    return x @ weight.T + bias + (alpha / lora_A.shape[0]) * (x @ lora_A.T) @ lora_B.T
""", {"test_no_bias"}),
    "bug_lora_detached_update": ("lora_forward", """
def lora_forward(x, weight, bias, lora_A, lora_B, alpha):
    delta = (alpha / lora_A.shape[0]) * (lora_B @ lora_A).detach()
    y = x @ (weight + delta).T
    return y if bias is None else y + bias
""", {"test_gradients"}),
}
