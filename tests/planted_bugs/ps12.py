"""Planted realistic bugs in ps12_flash: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    # -- online_softmax_update ----------------------------------------------------------------------------------
    "bug_online_sum_not_rescaled": ("online_softmax_update", """
def online_softmax_update(m, l, scores):
    m_new = torch.maximum(m, scores.amax(dim=-1))
    shift = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    return m_new, l + torch.exp(scores - shift[..., None]).sum(dim=-1)
""", {"test_rescaling", "test_large_scores", "test_masked"}),
    "bug_online_max_updated_after_use": ("online_softmax_update", """
def online_softmax_update(m, l, scores):
    shift = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    l_new = l + torch.exp(scores - shift[..., None]).sum(dim=-1)  # measured against the old max
    m_new = torch.maximum(m, scores.amax(dim=-1))
    return m_new, l_new
""", {"test_first_block", "test_rescaling", "test_large_scores", "test_masked"}),
    "bug_online_nan_on_masked_rows": ("online_softmax_update", """
def online_softmax_update(m, l, scores):
    m_new = torch.maximum(m, scores.amax(dim=-1))
    return m_new, l * torch.exp(m - m_new) + torch.exp(scores - m_new[..., None]).sum(dim=-1)
""", {"test_masked"}),
    # -- attention_tile -----------------------------------------------------------------------------------------
    "bug_tile_acc_not_rescaled": ("attention_tile", """
def attention_tile(m, l, acc, scores, v):
    m_new = torch.maximum(m, scores.amax(dim=-1))
    shift = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    alpha = torch.exp(m - shift)
    p = torch.exp(scores - shift[..., None])
    return m_new, alpha * l + p.sum(dim=-1), acc + p @ v
""", {"test_output_over_tiles", "test_masked_tiles"}),
    "bug_tile_normalised_per_tile": ("attention_tile", """
def attention_tile(m, l, acc, scores, v):
    m_new = torch.maximum(m, scores.amax(dim=-1))
    shift = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
    alpha = torch.exp(m - shift)
    p = torch.exp(scores - shift[..., None])
    l_new = alpha * l + p.sum(dim=-1)
    # each tile's output normalised by its own sum, then mixed: a softmax of the tile, not of the row
    safe = torch.where(l_new > 0, l_new, torch.ones_like(l_new))
    return m_new, l_new, (alpha[..., None] * acc + p @ v) / safe[..., None]
""", {"test_one_tile", "test_output_over_tiles", "test_masked_tiles"}),
    # -- tiled_attention ----------------------------------------------------------------------------------------
    "bug_tiled_no_final_normalisation": ("tiled_attention", """
def tiled_attention(q, k, v, causal=False, block_q=16, block_k=16):
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs, lses = [], []
    for i in range(0, t_q, block_q):
        q_blk = q[..., i:i + block_q, :]
        n = q_blk.shape[-2]
        m = torch.full(q_blk.shape[:-1], float("-inf"), dtype=q.dtype)
        l = torch.zeros(q_blk.shape[:-1], dtype=q.dtype)
        acc = torch.zeros(*q_blk.shape[:-1], v.shape[-1], dtype=q.dtype)
        for j in range(0, t_k, block_k):
            if causal and j > i + n - 1:
                break
            s = q_blk @ k[..., j:j + block_k, :].transpose(-2, -1) * scale
            if causal:
                s = s.masked_fill(torch.arange(j, j + s.shape[-1])[None, :] > torch.arange(i, i + n)[:, None],
                                  float("-inf"))
            m, l, acc = attention_tile(m, l, acc, s, v[..., j:j + block_k, :])
        outs.append(acc)
        lses.append(m + torch.log(l))
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)
""", {"test_non_causal", "test_ragged_lengths", "test_causal", "test_skips_tiles_above_diagonal"}),
    "bug_tiled_skips_diagonal_tiles": ("tiled_attention", """
def tiled_attention(q, k, v, causal=False, block_q=16, block_k=16):
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs, lses = [], []
    for i in range(0, t_q, block_q):
        q_blk = q[..., i:i + block_q, :]
        n = q_blk.shape[-2]
        m = torch.full(q_blk.shape[:-1], float("-inf"), dtype=q.dtype)
        l = torch.zeros(q_blk.shape[:-1], dtype=q.dtype)
        acc = torch.zeros(*q_blk.shape[:-1], v.shape[-1], dtype=q.dtype)
        for j in range(0, t_k, block_k):
            if causal and j + block_k > i + 1:  # "the tile reaches past the first query": skipped, diagonal too
                break
            s = q_blk @ k[..., j:j + block_k, :].transpose(-2, -1) * scale
            m, l, acc = attention_tile(m, l, acc, s, v[..., j:j + block_k, :])
        outs.append(acc / l[..., None])
        lses.append(m + torch.log(l))
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)
""", {"test_causal", "test_lse", "test_skips_tiles_above_diagonal"}),
    "bug_tiled_off_by_one_bounds": ("tiled_attention", """
def tiled_attention(q, k, v, causal=False, block_q=16, block_k=16):
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs, lses = [], []
    for i in range(0, t_q, block_q):
        q_blk = q[..., i:i + block_q, :]
        n = q_blk.shape[-2]
        m = torch.full(q_blk.shape[:-1], float("-inf"), dtype=q.dtype)
        l = torch.zeros(q_blk.shape[:-1], dtype=q.dtype)
        acc = torch.zeros(*q_blk.shape[:-1], v.shape[-1], dtype=q.dtype)
        for j in range(0, t_k - 1, block_k):  # one key short: a last tile of one key is never visited
            if causal and j > i + n - 1:
                break
            s = q_blk @ k[..., j:j + block_k, :].transpose(-2, -1) * scale
            if causal:
                s = s.masked_fill(torch.arange(j, j + s.shape[-1])[None, :] > torch.arange(i, i + n)[:, None],
                                  float("-inf"))
            m, l, acc = attention_tile(m, l, acc, s, v[..., j:j + block_k, :])
        outs.append(acc / l[..., None])
        lses.append(m + torch.log(l))
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)
""", {"test_ragged_lengths"}),
    "bug_tiled_masks_instead_of_skipping": ("tiled_attention", """
def tiled_attention(q, k, v, causal=False, block_q=16, block_k=16):
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs, lses = [], []
    for i in range(0, t_q, block_q):
        q_blk = q[..., i:i + block_q, :]
        n = q_blk.shape[-2]
        m = torch.full(q_blk.shape[:-1], float("-inf"), dtype=q.dtype)
        l = torch.zeros(q_blk.shape[:-1], dtype=q.dtype)
        acc = torch.zeros(*q_blk.shape[:-1], v.shape[-1], dtype=q.dtype)
        for j in range(0, t_k, block_k):  # every tile computed; the causal mask does the rest
            s = q_blk @ k[..., j:j + block_k, :].transpose(-2, -1) * scale
            if causal:
                s = s.masked_fill(torch.arange(j, j + s.shape[-1])[None, :] > torch.arange(i, i + n)[:, None],
                                  float("-inf"))
            m, l, acc = attention_tile(m, l, acc, s, v[..., j:j + block_k, :])
        outs.append(acc / l[..., None])
        lses.append(m + torch.log(l))
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)
""", {"test_skips_tiles_above_diagonal"}),
    "bug_tiled_lse_without_max": ("tiled_attention", """
def tiled_attention(q, k, v, causal=False, block_q=16, block_k=16):
    t_q, t_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs, lses = [], []
    for i in range(0, t_q, block_q):
        q_blk = q[..., i:i + block_q, :]
        n = q_blk.shape[-2]
        m = torch.full(q_blk.shape[:-1], float("-inf"), dtype=q.dtype)
        l = torch.zeros(q_blk.shape[:-1], dtype=q.dtype)
        acc = torch.zeros(*q_blk.shape[:-1], v.shape[-1], dtype=q.dtype)
        for j in range(0, t_k, block_k):
            if causal and j > i + n - 1:
                break
            s = q_blk @ k[..., j:j + block_k, :].transpose(-2, -1) * scale
            if causal:
                s = s.masked_fill(torch.arange(j, j + s.shape[-1])[None, :] > torch.arange(i, i + n)[:, None],
                                  float("-inf"))
            m, l, acc = attention_tile(m, l, acc, s, v[..., j:j + block_k, :])
        outs.append(acc / l[..., None])
        lses.append(torch.log(l))  # l was summed relative to m: the max is missing
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)
""", {"test_lse"}),
    # -- tile_backward ------------------------------------------------------------------------------------------
    "bug_backward_softmax_of_the_tile": ("tile_backward", """
def tile_backward(q, k, v, out, dout, lse, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ k.transpose(-2, -1) * scale
    e = torch.exp(s - s.amax(dim=-1, keepdim=True))
    p = e / e.sum(dim=-1, keepdim=True)  # normalised over the tile's keys only, not with the row's lse
    delta = (dout * out).sum(dim=-1)
    dv = p.transpose(-2, -1) @ dout
    ds = p * (dout @ v.transpose(-2, -1) - delta[..., None])
    return ds @ k * scale, ds.transpose(-2, -1) @ q * scale, dv
""", {"test_dv", "test_dq", "test_dk", "test_sum_of_tiles"}),
    "bug_backward_delta_from_the_tile": ("tile_backward", """
def tile_backward(q, k, v, out, dout, lse, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    p = torch.exp(q @ k.transpose(-2, -1) * scale - lse[..., None])
    dp = dout @ v.transpose(-2, -1)
    delta = (p * dp).sum(dim=-1)  # summed over this tile's keys only
    dv = p.transpose(-2, -1) @ dout
    ds = p * (dp - delta[..., None])
    return ds @ k * scale, ds.transpose(-2, -1) @ q * scale, dv
""", {"test_dq", "test_dk", "test_sum_of_tiles"}),
    "bug_backward_scale_forgotten_in_dq": ("tile_backward", """
def tile_backward(q, k, v, out, dout, lse, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    p = torch.exp(q @ k.transpose(-2, -1) * scale - lse[..., None])
    delta = (dout * out).sum(dim=-1)
    dv = p.transpose(-2, -1) @ dout
    ds = p * (dout @ v.transpose(-2, -1) - delta[..., None])
    return ds @ k, ds.transpose(-2, -1) @ q * scale, dv
""", {"test_dq", "test_sum_of_tiles"}),
}
