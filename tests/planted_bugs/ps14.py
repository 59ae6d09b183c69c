"""Planted realistic bugs in ps14_inference: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_decode_forgets_new_token": ("decode_step", '''
def decode_step(q, k_cache, v_cache, k_new, v_new):
    k_all = torch.cat([k_cache, k_new], dim=-2)
    v_all = torch.cat([v_cache, v_new], dim=-2)
    scores = q @ k_cache.transpose(-2, -1) / math.sqrt(q.shape[-1])
    y = torch.softmax(scores, dim=-1) @ v_cache
    return y, k_all, v_all
''', {"test_output", "test_own_token"}),
    "bug_decode_scale_by_d": ("decode_step", '''
def decode_step(q, k_cache, v_cache, k_new, v_new):
    k_all = torch.cat([k_cache, k_new], dim=-2)
    v_all = torch.cat([v_cache, v_new], dim=-2)
    scores = q @ k_all.transpose(-2, -1) / q.shape[-1]
    y = torch.softmax(scores, dim=-1) @ v_all
    return y, k_all, v_all
''', {"test_output"}),
    "bug_decode_prepends": ("decode_step", '''
def decode_step(q, k_cache, v_cache, k_new, v_new):
    k_all = torch.cat([k_new, k_cache], dim=-2)
    v_all = torch.cat([v_new, v_cache], dim=-2)
    scores = q @ k_all.transpose(-2, -1) / math.sqrt(q.shape[-1])
    y = torch.softmax(scores, dim=-1) @ v_all
    return y, k_all, v_all
''', {"test_cache_append"}),
    "bug_rolling_in_place": ("rolling_update", '''
def rolling_update(k_buf, pos_buf, k_new, pos_new):
    w = k_buf.shape[0]
    for i in range(k_new.shape[0]):
        slot = int(pos_new[i]) % w
        k_buf[slot] = k_new[i]
        pos_buf[slot] = pos_new[i]
    return k_buf, pos_buf
''', {"test_single_token", "test_wrapping_chunk", "test_chunk_longer_than_window"}),
    "bug_rolling_keeps_first_w": ("rolling_update", '''
def rolling_update(k_buf, pos_buf, k_new, pos_new):
    w = k_buf.shape[0]
    k_out, pos_out = k_buf.clone(), pos_buf.clone()
    for i in range(min(k_new.shape[0], w)):
        slot = int(pos_new[i]) % w
        k_out[slot] = k_new[i]
        pos_out[slot] = pos_new[i]
    return k_out, pos_out
''', {"test_chunk_longer_than_window"}),
    "bug_rolling_slot_from_chunk_index": ("rolling_update", '''
def rolling_update(k_buf, pos_buf, k_new, pos_new):
    w = k_buf.shape[0]
    k_out, pos_out = k_buf.clone(), pos_buf.clone()
    for i in range(k_new.shape[0]):
        slot = i % w
        k_out[slot] = k_new[i]
        pos_out[slot] = pos_new[i]
    return k_out, pos_out
''', {"test_single_token", "test_wrapping_chunk", "test_chunk_longer_than_window"}),
    "bug_expand_tiles_heads": ("expand_kv_heads", '''
def expand_kv_heads(k, n_head):
    group = n_head // k.shape[1]
    return k.repeat(1, group, 1, 1)
''', {"test_grouping"}),
    "bug_spec_inverted_ratio": ("speculative_step", '''
def speculative_step(p, q, x, u, v):
    if u * p[x] < q[x]:
        return int(x)
    r = (p - q).clamp(min=0)
    cdf = torch.cumsum(r / r.sum(), dim=0)
    return int((cdf > v).nonzero()[0])
''', {"test_accept", "test_reject_residual", "test_distribution"}),
    "bug_spec_resample_from_target": ("speculative_step", '''
def speculative_step(p, q, x, u, v):
    if u * q[x] < p[x]:
        return int(x)
    cdf = torch.cumsum(p, dim=0)
    return int((cdf > v).nonzero()[0])
''', {"test_reject_residual", "test_distribution"}),
    "bug_quant_per_tensor_scale": ("quantize_int8", '''
def quantize_int8(w):
    amax = w.abs().max().float()
    scale = torch.full((w.shape[0],), float(amax / 127.0)) if amax > 0 else torch.ones(w.shape[0])
    q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale
''', {"test_scales", "test_values"}),
    "bug_quant_truncates": ("quantize_int8", '''
def quantize_int8(w):
    amax = w.abs().amax(dim=1).float()
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = (w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale
''', {"test_values"}),
    "bug_quant_zero_row_nan": ("quantize_int8", '''
def quantize_int8(w):
    scale = w.abs().amax(dim=1).float() / 127.0
    q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale
''', {"test_scales"}),
}
