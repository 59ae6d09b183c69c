"""Planted realistic bugs in ps10_gpt: name -> (function, the buggy answer cell, the checks it must fail)."""

_BLOCK_HEAD = """
def block_forward(x, params, n_head):
    def linear(h, name):
        out = h @ params[name + ".weight"].T
        b = params.get(name + ".bias")
        return out if b is None else out + b

    def norm(h, name):
        return F.layer_norm(h, h.shape[-1:], params[name + ".weight"], params.get(name + ".bias"), eps=1e-5)

    def attention(h, causal=True, scale=True):
        b, t, c = h.shape
        d = c // n_head
        q, k, v = (linear(h, f"attn.{n}_proj").view(b, t, n_head, d).transpose(1, 2) for n in "qkv")
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / math.sqrt(d)
        if causal:
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, c)
        return linear(y, "attn.o_proj")

    def mlp(h):
        return linear(F.gelu(linear(h, "mlp.fc_in")), "mlp.fc_out")
"""

BUGS = {
    # -- gpt_param_count ----------------------------------------------------------------------------------------
    "bug_params_tied_head_counted_twice": ("gpt_param_count", """
def gpt_param_count(vocab_size, block_size, n_layer, n_embd, tie_weights=True, bias=True):
    c = n_embd
    norm = 2 * c if bias else c
    block = 12 * c * c + (9 * c if bias else 0) + 2 * norm
    return n_layer * block + 2 * vocab_size * c + block_size * c + norm
""", {"test_gpt2_defaults", "test_untied_head", "test_crossed"}),
    "bug_params_forgets_position_table": ("gpt_param_count", """
def gpt_param_count(vocab_size, block_size, n_layer, n_embd, tie_weights=True, bias=True):
    c = n_embd
    norm = 2 * c if bias else c
    block = 12 * c * c + (9 * c if bias else 0) + 2 * norm
    return n_layer * block + vocab_size * c + norm + (0 if tie_weights else vocab_size * c)
""", {"test_gpt2_defaults", "test_crossed"}),
    "bug_params_no_bias_keeps_layernorm_shifts": ("gpt_param_count", """
def gpt_param_count(vocab_size, block_size, n_layer, n_embd, tie_weights=True, bias=True):
    c = n_embd
    block = 12 * c * c + (9 * c if bias else 0) + 4 * c
    return n_layer * block + vocab_size * c + block_size * c + 2 * c + (0 if tie_weights else vocab_size * c)
""", {"test_no_bias", "test_crossed"}),
    # -- block_forward ------------------------------------------------------------------------------------------
    "bug_block_attention_not_causal": ("block_forward", _BLOCK_HEAD + """
    x = x + attention(norm(x, "norm_1"), causal=False)
    return x + mlp(norm(x, "norm_2"))
""", {"test_attention_half", "test_causal", "test_matches_block"}),
    "bug_block_no_sqrt_d_scale": ("block_forward", _BLOCK_HEAD + """
    x = x + attention(norm(x, "norm_1"), scale=False)
    return x + mlp(norm(x, "norm_2"))
""", {"test_attention_half", "test_matches_block"}),
    "bug_block_post_ln": ("block_forward", _BLOCK_HEAD + """
    x = norm(x + attention(x), "norm_1")
    return norm(x + mlp(x), "norm_2")
""", {"test_attention_half", "test_mlp_half", "test_matches_block"}),
    "bug_block_attention_residual_missing": ("block_forward", _BLOCK_HEAD + """
    x = attention(norm(x, "norm_1"))
    return x + mlp(norm(x, "norm_2"))
""", {"test_attention_half", "test_mlp_half", "test_matches_block"}),
    "bug_block_requires_every_bias": ("block_forward", _BLOCK_HEAD.replace(
        'b = params.get(name + ".bias")', 'b = params[name + ".bias"]').replace(
        'params.get(name + ".bias"), eps', 'params[name + ".bias"], eps') + """
    x = x + attention(norm(x, "norm_1"))
    return x + mlp(norm(x, "norm_2"))
""", {"test_matches_block"}),
    "bug_block_layernorm_statistics_detached": ("block_forward", _BLOCK_HEAD.replace(
        "return F.layer_norm(h, h.shape[-1:], params[name + \".weight\"], params.get(name + \".bias\"), eps=1e-5)",
        """mean = h.mean(dim=-1, keepdim=True).detach()  # "statistics are constants"
        var = h.var(dim=-1, keepdim=True, unbiased=False).detach()
        out = (h - mean) / torch.sqrt(var + 1e-5) * params[name + ".weight"]
        return out if params.get(name + ".bias") is None else out + params[name + ".bias"]""") + """
    x = x + attention(norm(x, "norm_1"))
    return x + mlp(norm(x, "norm_2"))
""", {"test_gradient"}),
    # -- generate_greedy ----------------------------------------------------------------------------------------
    "bug_generate_no_window": ("generate_greedy", """
def generate_greedy(logits_fn, idx, max_new_tokens, block_size):
    for _ in range(max_new_tokens):
        next_id = logits_fn(idx)[:, -1].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_id], dim=1)
    return idx
""", {"test_window_is_last_block_size_tokens"}),
    "bug_generate_window_from_the_start": ("generate_greedy", """
def generate_greedy(logits_fn, idx, max_new_tokens, block_size):
    for _ in range(max_new_tokens):
        next_id = logits_fn(idx[:, :block_size])[:, -1].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_id], dim=1)
    return idx
""", {"test_window_is_last_block_size_tokens"}),
    "bug_generate_reads_first_position": ("generate_greedy", """
def generate_greedy(logits_fn, idx, max_new_tokens, block_size):
    for _ in range(max_new_tokens):
        next_id = logits_fn(idx[:, -block_size:])[:, 0].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_id], dim=1)
    return idx
""", {"test_argmax_of_last_position"}),
    # -- sample_with_temperature --------------------------------------------------------------------------------
    "bug_sample_temperature_after_softmax": ("sample_with_temperature", """
def sample_with_temperature(logits, temperature, u):
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits, dim=-1) / temperature
    probs = probs / probs.sum(dim=-1, keepdim=True)
    cdf = probs.cumsum(dim=-1)
    return (cdf <= u[:, None]).sum(dim=-1).clamp(max=logits.shape[-1] - 1)
""", {"test_temperature"}),
    "bug_sample_ignores_u": ("sample_with_temperature", """
def sample_with_temperature(logits, temperature, u):
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(-1)
""", {"test_inverse_cdf", "test_temperature", "test_zero_probability_never_drawn"}),
    "bug_sample_searchsorted_left": ("sample_with_temperature", """
def sample_with_temperature(logits, temperature, u):
    if temperature == 0:
        return logits.argmax(dim=-1)
    cdf = torch.softmax(logits / temperature, dim=-1).cumsum(dim=-1)
    return torch.searchsorted(cdf, u[:, None]).squeeze(-1).clamp(max=logits.shape[-1] - 1)
""", {"test_zero_probability_never_drawn"}),
    "bug_sample_divides_by_zero_temperature": ("sample_with_temperature", """
def sample_with_temperature(logits, temperature, u):
    cdf = torch.softmax(logits / temperature, dim=-1).cumsum(dim=-1)
    return (cdf <= u[:, None]).sum(dim=-1).clamp(max=logits.shape[-1] - 1)
""", {"test_greedy_at_zero"}),
    # -- top_k_filter -------------------------------------------------------------------------------------------
    "bug_topk_keeps_k_plus_one": ("top_k_filter", """
def top_k_filter(logits, k):
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.sort(logits, dim=-1, descending=True).values[..., k:k + 1]
    return logits.masked_fill(logits < kth, float("-inf"))
""", {"test_k_largest", "test_ties", "test_every_row"}),
    "bug_topk_keeps_ties": ("top_k_filter", """
def top_k_filter(logits, k):
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))
""", {"test_ties"}),
    "bug_topk_in_place": ("top_k_filter", """
def top_k_filter(logits, k):
    if k >= logits.shape[-1]:
        return logits
    kept = torch.topk(logits, k, dim=-1).indices
    drop = torch.ones_like(logits, dtype=torch.bool).scatter(-1, kept, False)
    logits[drop] = float("-inf")
    return logits
""", {"test_k_largest", "test_ties", "test_every_row"}),
    "bug_topk_k_larger_than_vocabulary": ("top_k_filter", """
def top_k_filter(logits, k):
    kept = torch.topk(logits, k, dim=-1).indices
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, kept, logits.gather(-1, kept))
""", {"test_k_at_least_vocabulary"}),
    # -- top_p_filter -------------------------------------------------------------------------------------------
    "bug_topp_drops_the_crossing_token": ("top_p_filter", """
def top_p_filter(logits, p):
    if p >= 1:
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    keep = torch.zeros_like(cumulative, dtype=torch.bool).scatter(-1, order, cumulative <= p)
    return logits.masked_fill(~keep, float("-inf"))
""", {"test_nucleus", "test_top_token_always_kept", "test_every_row"}),
    "bug_topp_without_sorting": ("top_p_filter", """
def top_p_filter(logits, p):
    if p >= 1:
        return logits.clone()
    probs = torch.softmax(logits, dim=-1)
    keep = probs.cumsum(dim=-1) - probs < p
    return logits.masked_fill(~keep, float("-inf"))
""", {"test_nucleus", "test_top_token_always_kept", "test_every_row"}),
    "bug_topp_mask_left_in_sorted_order": ("top_p_filter", """
def top_p_filter(logits, p):
    if p >= 1:
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    keep_sorted = probs.cumsum(dim=-1) - probs < p
    return logits.masked_fill(~keep_sorted, float("-inf"))
""", {"test_nucleus", "test_top_token_always_kept", "test_every_row"}),
    "bug_topp_p_one_not_special": ("top_p_filter", """
def top_p_filter(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    keep_sorted = probs.cumsum(dim=-1) - probs < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))
""", {"test_p_one_keeps_everything"}),
}
