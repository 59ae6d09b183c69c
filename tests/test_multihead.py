"""mt.MultiHeadAttention, split_heads, merge_heads against torch.nn.MultiheadAttention and closed forms."""

import random

import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt


def random_config(seed):
    rng = random.Random(seed)
    n_head = rng.choice([1, 2, 3, 4])
    d_model = n_head * rng.randint(1, 6)
    b, t, s = rng.randint(1, 3), rng.randint(1, 7), rng.randint(1, 7)
    return d_model, n_head, b, t, s


def copy_into_torch(ours: mt.MultiHeadAttention, bias=True) -> torch.nn.MultiheadAttention:
    """A torch.nn.MultiheadAttention holding our weights (its in_proj stacks W_Q, W_K, W_V row-wise)."""
    ref = torch.nn.MultiheadAttention(ours.d_model, ours.n_head, bias=bias, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.out_proj.weight.copy_(ours.o_proj.weight)
        if bias:
            ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            ref.out_proj.bias.copy_(ours.o_proj.bias)
    return ref


# --- split_heads / merge_heads ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_split_heads_gives_each_head_its_slice_of_features(seed):
    d_model, n_head, b, t, _ = random_config(seed)
    x = torch.randn(b, t, d_model, generator=torch.Generator().manual_seed(seed))
    h = mt.split_heads(x, n_head)
    d = d_model // n_head
    assert h.shape == (b, n_head, t, d)
    for i in range(n_head):  # independent reference: slicing the feature dim by hand
        torch.testing.assert_close(h[:, i], x[:, :, i * d : (i + 1) * d], rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(5))
def test_merge_heads_concatenates_and_inverts_split(seed):
    d_model, n_head, b, t, _ = random_config(seed)
    d = d_model // n_head
    heads = torch.randn(b, n_head, t, d, generator=torch.Generator().manual_seed(seed))
    merged = mt.merge_heads(heads)
    torch.testing.assert_close(merged, torch.cat(heads.unbind(1), dim=-1), rtol=0, atol=0)
    torch.testing.assert_close(mt.split_heads(merged, n_head), heads, rtol=0, atol=0)


def test_split_and_merge_reject_bad_shapes():
    with pytest.raises(ValueError, match="divisor"):
        mt.split_heads(torch.zeros(1, 2, 10), 3)
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        mt.split_heads(torch.zeros(2, 10), 2)
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        mt.merge_heads(torch.zeros(2, 3, 4))


# --- MultiHeadAttention vs torch.nn.MultiheadAttention ---------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("need_weights", [False, True])
def test_self_attention_matches_torch(seed, need_weights):
    d_model, n_head, b, t, _ = random_config(seed)
    torch.manual_seed(seed)
    ours = mt.MultiHeadAttention(d_model, n_head)
    ref = copy_into_torch(ours)
    x = torch.randn(b, t, d_model)
    expected, expected_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
    got = ours(x, need_weights=need_weights)
    if need_weights:
        got, w = got
        torch.testing.assert_close(w, expected_w, atol=1e-5, rtol=1e-5)
        assert w.shape == (b, n_head, t, t)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_without_bias_matches_torch(seed):
    d_model, n_head, b, t, _ = random_config(seed)
    torch.manual_seed(seed)
    ours = mt.MultiHeadAttention(d_model, n_head, bias=False)
    assert all(m.bias is None for m in (ours.q_proj, ours.k_proj, ours.v_proj, ours.o_proj))
    ref = copy_into_torch(ours, bias=False)
    x = torch.randn(b, t, d_model)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("need_weights", [False, True])
def test_causal_matches_torch(seed, need_weights):
    d_model, n_head, b, t, _ = random_config(100 + seed)
    torch.manual_seed(seed)
    ours = mt.MultiHeadAttention(d_model, n_head)
    ref = copy_into_torch(ours)
    x = torch.randn(b, t, d_model)
    future = torch.ones(t, t, dtype=torch.bool).triu(1)  # torch.nn's bool mask is True where *forbidden*
    expected = ref(x, x, x, attn_mask=future, need_weights=False)[0]
    got = ours(x, is_causal=True, need_weights=need_weights)
    if need_weights:
        got, w = got
        assert torch.all(w[..., future] == 0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("need_weights", [False, True])
def test_boolean_and_additive_masks_match_torch(seed, need_weights):
    d_model, n_head, b, t, s = random_config(200 + seed)
    torch.manual_seed(seed)
    ours = mt.MultiHeadAttention(d_model, n_head)
    ref = copy_into_torch(ours)
    x, kv = torch.randn(b, t, d_model), torch.randn(b, s, d_model)
    keep = torch.rand(b, n_head, t, s) > 0.4  # a different mask per batch element and head
    keep[..., 0] = True  # every query keeps at least one key
    forbid = (~keep).reshape(b * n_head, t, s)  # torch.nn's layout (B*H, T, S), True = forbidden
    expected = ref(x, kv, kv, attn_mask=forbid, need_weights=False)[0]
    got = ours(x, kv, mask=keep, need_weights=need_weights)
    got = got[0] if need_weights else got
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    additive = torch.zeros(b, n_head, t, s).masked_fill(~keep, float("-inf"))
    got_add = ours(x, kv, mask=additive, need_weights=need_weights)
    got_add = got_add[0] if need_weights else got_add
    torch.testing.assert_close(got_add, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_cross_attention_matches_torch(seed):
    d_model, n_head, b, t, s = random_config(300 + seed)
    s = t + 1 + seed % 3  # keys/values come from a sequence of a different length
    torch.manual_seed(seed)
    ours = mt.MultiHeadAttention(d_model, n_head)
    ref = copy_into_torch(ours)
    x, memory = torch.randn(b, t, d_model), torch.randn(b, s, d_model)
    expected, expected_w = ref(x, memory, memory, need_weights=True, average_attn_weights=False)
    y, w = ours(x, memory, need_weights=True)
    assert y.shape == (b, t, d_model) and w.shape == (b, n_head, t, s)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, expected_w, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(x, memory), expected, atol=1e-5, rtol=1e-5)


def test_padding_mask_from_the_package_works():
    torch.manual_seed(0)
    ours = mt.MultiHeadAttention(8, 2)
    ref = copy_into_torch(ours)
    x = torch.randn(3, 5, 8)
    lengths = torch.tensor([5, 3, 1])
    expected = ref(x, x, x, key_padding_mask=~mt.padding_mask(lengths, 5)[:, 0, 0], need_weights=False)[0]
    for need_weights in (False, True):
        got = ours(x, mask=mt.padding_mask(lengths, 5), need_weights=need_weights)
        got = got[0] if need_weights else got
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_both_code_paths_agree_in_float64(seed):
    d_model, n_head, b, t, s = random_config(400 + seed)
    torch.manual_seed(seed)
    mha = mt.MultiHeadAttention(d_model, n_head, n_kv_head=1).double()
    x, kv = torch.randn(b, t, d_model, dtype=torch.float64), torch.randn(b, s, d_model, dtype=torch.float64)
    for kwargs in ({}, {"is_causal": True}):
        fused = mha(x, kv, **kwargs)
        explicit, w = mha(x, kv, need_weights=True, **kwargs)
        torch.testing.assert_close(fused, explicit, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(w.sum(-1), torch.ones(b, n_head, t, dtype=torch.float64))


# --- grouped- and multi-query attention ------------------------------------------------------------


def test_gqa_with_as_many_kv_heads_as_query_heads_is_mha():
    torch.manual_seed(0)
    mha = mt.MultiHeadAttention(12, 4)
    gqa = mt.MultiHeadAttention(12, 4, n_kv_head=4)
    gqa.load_state_dict(mha.state_dict())
    x = torch.randn(2, 6, 12)
    torch.testing.assert_close(gqa(x, is_causal=True), mha(x, is_causal=True), rtol=0, atol=0)
    torch.testing.assert_close(gqa(x), copy_into_torch(mha)(x, x, x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_head, n_kv_head", [(4, 1), (6, 2), (6, 3), (8, 2)])
@pytest.mark.parametrize("need_weights", [False, True])
def test_shared_kv_heads_equal_mha_with_copied_kv_heads(n_head, n_kv_head, need_weights):
    """MQA/GQA = ordinary MHA whose query head h uses K/V head h // (n_head // n_kv_head)."""
    d_head, group = 3, n_head // n_kv_head
    d_model = n_head * d_head
    torch.manual_seed(n_head * 10 + n_kv_head)
    gqa = mt.MultiHeadAttention(d_model, n_head, n_kv_head=n_kv_head)
    assert gqa.k_proj.weight.shape == (n_kv_head * d_head, d_model)
    mha = mt.MultiHeadAttention(d_model, n_head)
    with torch.no_grad():
        mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
        mha.o_proj.load_state_dict(gqa.o_proj.state_dict())
        for full, shared in ((mha.k_proj, gqa.k_proj), (mha.v_proj, gqa.v_proj)):
            for h in range(n_head):
                g = h // group
                full.weight[h * d_head : (h + 1) * d_head] = shared.weight[g * d_head : (g + 1) * d_head]
                full.bias[h * d_head : (h + 1) * d_head] = shared.bias[g * d_head : (g + 1) * d_head]
    x = torch.randn(2, 5, d_model)
    expected = copy_into_torch(mha)(x, x, x, attn_mask=torch.ones(5, 5, dtype=torch.bool).triu(1))[0]
    got = gqa(x, is_causal=True, need_weights=need_weights)
    got = got[0] if need_weights else got
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_kv_projection_sizes_and_parameter_count():
    for n_kv_head in (1, 2, 4, 8):
        m = mt.MultiHeadAttention(32, 8, n_kv_head=n_kv_head)
        d = 4
        expected = 2 * (32 * 32 + 32) + 2 * (32 * n_kv_head * d + n_kv_head * d)  # Q, O full; K, V shrunk
        assert sum(p.numel() for p in m.parameters()) == expected


# --- errors, dropout, gradients --------------------------------------------------------------------


def test_clear_errors():
    with pytest.raises(ValueError, match="n_head must divide d_model"):
        mt.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="n_kv_head must divide n_head"):
        mt.MultiHeadAttention(12, 4, n_kv_head=3)
    with pytest.raises(ValueError, match="n_kv_head must divide n_head"):
        mt.MultiHeadAttention(12, 4, n_kv_head=0)
    with pytest.raises(ValueError, match="dropout"):
        mt.MultiHeadAttention(12, 4, dropout=1.0)
    mha = mt.MultiHeadAttention(12, 4)
    with pytest.raises(ValueError, match="d_model=12"):
        mha(torch.zeros(2, 3, 10))
    with pytest.raises(ValueError, match="d_model=12"):
        mha(torch.zeros(3, 12))
    with pytest.raises(ValueError, match="batch size"):
        mha(torch.zeros(2, 3, 12), torch.zeros(1, 3, 12))
    with pytest.raises(ValueError, match="not both"):
        mha(torch.zeros(2, 3, 12), mask=torch.ones(3, 3, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(torch.zeros(2, 3, 12), mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(torch.zeros(2, 3, 12), mask=torch.ones(2, 3, 3, 3, dtype=torch.bool))


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    mha = mt.MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 6, 8)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x), rtol=0, atol=0)
    torch.testing.assert_close(mha(x), mha(x, need_weights=True)[0], atol=1e-6, rtol=1e-5)
    mha.train()
    assert not torch.allclose(mha(x), mha(x))  # a fresh random mask each call
    assert not torch.allclose(mha(x, need_weights=True)[0], mha.eval()(x))


@pytest.mark.parametrize("need_weights", [False, True])
def test_gradients_flow_to_every_parameter_and_input(need_weights):
    torch.manual_seed(0)
    mha = mt.MultiHeadAttention(8, 4, n_kv_head=2)
    x = torch.randn(2, 5, 8, requires_grad=True)
    y = mha(x, is_causal=True, need_weights=need_weights)
    y = y[0] if need_weights else y
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in mha.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gradcheck_float64():
    torch.manual_seed(0)
    mha = mt.MultiHeadAttention(6, 3, n_kv_head=1).double()
    x = torch.randn(1, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: mha(inp, is_causal=True, need_weights=True)[0], (x,))
    assert torch.autograd.gradcheck(lambda inp: mha(inp, is_causal=True), (x,))


def test_fused_path_matches_functional_reference():
    """The fused path, written out by hand with F.linear + F.scaled_dot_product_attention."""
    torch.manual_seed(1)
    mha = mt.MultiHeadAttention(12, 3)
    x = torch.randn(2, 4, 12)
    projections = (mha.q_proj, mha.k_proj, mha.v_proj)
    q, k, v = (F.linear(x, m.weight, m.bias).view(2, 4, 3, 4).transpose(1, 2) for m in projections)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 4, 12)
    torch.testing.assert_close(mha(x, is_causal=True), F.linear(y, mha.o_proj.weight, mha.o_proj.bias))
