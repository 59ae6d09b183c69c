"""mt.interp against independent references: attention weights recomputed by hand from a block's own
projections, head scores against closed forms and naive loops, head ablation against subtracting the head's
contribution computed with torch.nn.functional, the logit lens against the model's own logits, and the
hand-written attention backward against autograd through F.scaled_dot_product_attention.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt


def small_gpt(pos="learned", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = mt.GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32, pos=pos, **kw)
    model = mt.GPT(cfg).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so that heads differ visibly
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def heads_by_hand(block, x):
    """q, k, v (B, H, T, D) of a Pre-LN block on input x (B, T, C), RoPE-free."""
    a = block.attn
    h = block.norm_1(x)
    b, t, c = h.shape

    def split(z):
        return z.view(b, t, a.n_head, c // a.n_head).transpose(1, 2)

    return split(a.q_proj(h)), split(a.k_proj(h)), split(a.v_proj(h))


def test_attention_maps_are_the_softmax_of_the_scores_and_leave_the_model_unchanged():
    model = small_gpt()
    idx = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits_before = model(idx)[0]
    maps = mt.attention_maps(model, idx)
    assert len(maps) == 2 and all(m.shape == (3, 4, 9, 9) for m in maps)
    with torch.no_grad():
        x = model.embed(idx)
        q, k, v = heads_by_hand(model.blocks[0], x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(torch.ones(9, 9).triu(1).bool(), float("-inf"))
        expected0 = torch.softmax(scores, -1)
        x1 = model.blocks[0](x)
        q, k, v = heads_by_hand(model.blocks[1], x1)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(torch.ones(9, 9).triu(1).bool(), -1e30)
        expected1 = torch.softmax(scores, -1)
        logits_after = model(idx)[0]
    torch.testing.assert_close(maps[0], expected0, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps[1], expected1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits_after, logits_before, atol=0, rtol=0)  # hooks are gone
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_attention_maps_with_rope_rows_sum_to_one_and_are_causal():
    model = small_gpt(pos="rope")
    maps = mt.attention_maps(model, torch.randint(0, 11, (2, 7)))
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 4, 7))
        assert float(m.triu(1).abs().max()) == 0.0


def test_attention_maps_needs_attention_modules():
    with pytest.raises(ValueError, match="MultiHeadAttention"):
        mt.attention_maps(torch.nn.Linear(3, 3), torch.zeros(1, 3))


def uniform_causal(t):
    w = torch.ones(t, t).tril()
    return w / w.sum(-1, keepdim=True)


@pytest.mark.parametrize("t", [2, 5, 17])
def test_scores_of_a_uniform_causal_head_match_the_closed_form(t):
    w = uniform_causal(t)
    expected = sum(1 / (i + 1) for i in range(1, t)) / (t - 1)  # query i spreads 1/(i+1) over i+1 keys
    assert mt.previous_token_score(w).item() == pytest.approx(expected, rel=1e-6)
    assert mt.first_token_score(w).item() == pytest.approx(expected, rel=1e-6)


def test_a_pure_previous_token_head_scores_one_and_zero_on_the_first_token():
    t = 8
    w = torch.zeros(t, t)
    w[0, 0] = 1
    w[torch.arange(1, t), torch.arange(0, t - 1)] = 1
    assert mt.previous_token_score(w).item() == 1.0
    assert mt.first_token_score(w).item() == pytest.approx(1 / (t - 1))  # query 1's previous token is key 0


def naive_induction(w, period):
    t = w.shape[-1]
    vals = [w[..., i, i - period + 1] for i in range(period, t)]
    return torch.stack(vals, -1).mean(-1)


@pytest.mark.parametrize("period,t", [(1, 4), (3, 6), (5, 13), (7, 8)])
def test_induction_score_matches_a_naive_loop_and_a_perfect_head(period, t):
    g = torch.Generator().manual_seed(period)
    w = torch.softmax(torch.randn(2, 3, t, t, generator=g), -1)
    torch.testing.assert_close(mt.induction_score(w, period), naive_induction(w, period))
    perfect = torch.zeros(t, t)
    for i in range(period, t):
        perfect[i, i - period + 1] = 1.0
    assert mt.induction_score(perfect, period).item() == 1.0


def test_scores_reject_bad_shapes_and_periods():
    with pytest.raises(ValueError, match=r"\(\.\.\., T, T\)"):
        mt.previous_token_score(torch.ones(3, 4))
    with pytest.raises(ValueError, match="period"):
        mt.induction_score(torch.ones(4, 4), 4)
    with pytest.raises(ValueError, match="T >= 2"):
        mt.first_token_score(torch.ones(1, 1))


def test_head_scores_and_classify_heads():
    prev = torch.zeros(6, 6)
    prev[0, 0] = 1
    prev[torch.arange(1, 6), torch.arange(5)] = 1
    first = torch.zeros(6, 6)
    first[:, 0] = 1
    layer = torch.stack([prev, first, uniform_causal(6)])[None]  # (1, 3, 6, 6)
    scores = mt.head_scores([layer, layer.flip(1)])
    assert set(scores) == {"previous-token", "first-token"} and scores["previous-token"].shape == (2, 3)
    labels = mt.classify_heads(scores, threshold=0.5)
    assert labels[0] == ["previous-token", "first-token", "mixed"]
    assert labels[1] == ["mixed", "first-token", "previous-token"]
    assert "induction" in mt.head_scores([layer], period=3)


def test_repeated_random_tokens():
    idx = mt.repeated_random_tokens(4, 10, 7, torch.Generator().manual_seed(0), low=2)
    assert idx.shape == (4, 20) and idx.dtype == torch.long
    assert torch.equal(idx[:, :10], idx[:, 10:])
    assert int(idx.min()) >= 2 and int(idx.max()) < 7


def test_token_losses_average_to_the_models_loss():
    model = small_gpt()
    idx = torch.randint(0, 11, (2, 10))
    with torch.no_grad():
        losses = mt.token_losses(model, idx)
        _, loss = model(idx[:, :-1], idx[:, 1:])
    assert losses.shape == (2, 9)
    torch.testing.assert_close(losses.mean(), loss)


def test_zero_head_zeroes_one_slice_and_copies():
    x = torch.randn(2, 3, 12)
    y = mt.zero_head(x, 1, 4)
    assert torch.all(y[..., 3:6] == 0) and torch.equal(y[..., :3], x[..., :3]) and torch.equal(y[..., 6:], x[..., 6:])
    assert not torch.all(x[..., 3:6] == 0)  # the input is untouched
    with pytest.raises(ValueError):
        mt.zero_head(x, 4, 4)


def test_ablating_a_head_removes_exactly_its_contribution():
    model = small_gpt(bias=True)
    idx = torch.randint(0, 11, (2, 8))
    block = model.blocks[1]
    captured = {}
    handle = block.attn.register_forward_hook(lambda m, a, out: captured.__setitem__("x", a[0]))
    with torch.no_grad():
        model(idx)
    handle.remove()
    h_in = captured["x"]  # the normalised input of layer 1's attention
    a = block.attn
    with torch.no_grad():
        full = a(h_in, is_causal=True)
        b, t, c = h_in.shape
        q, k, v = (p(h_in).view(b, t, 4, 8).transpose(1, 2) for p in (a.q_proj, a.k_proj, a.v_proj))
        heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        contribution = heads[:, 2] @ a.o_proj.weight[:, 16:24].T  # head 2 through its slice of W_O
        captured.clear()
        handle = a.register_forward_hook(lambda m, args, out: captured.__setitem__("y", out))
        with mt.ablate_heads(model, [(1, 2)]):
            model(idx)
        handle.remove()
    torch.testing.assert_close(captured["y"], full - contribution, atol=1e-5, rtol=1e-5)
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_ablating_every_head_of_a_layer_leaves_the_bias_only():
    model = small_gpt(bias=True)
    a = model.blocks[0].attn
    out = {}
    handle = a.register_forward_hook(lambda m, args, y: out.__setitem__("y", y))
    with torch.no_grad(), mt.ablate_heads(model, [(0, h) for h in range(4)]):
        model(torch.randint(0, 11, (1, 5)))
    handle.remove()
    torch.testing.assert_close(out["y"], a.o_proj.bias.expand(1, 5, 32))


def test_ablate_heads_rejects_missing_heads():
    with pytest.raises(ValueError, match="no head"):
        with mt.ablate_heads(small_gpt(), [(2, 0)]):
            pass


def test_logit_lens_ends_with_the_models_logits_and_starts_with_the_embedding():
    model = small_gpt(pos="rope", norm="rms")
    idx = torch.randint(0, 11, (2, 6))
    lens = mt.logit_lens(model, idx)
    assert lens.shape == (3, 2, 6, 11)
    with torch.no_grad():
        logits = model(idx)[0]
        emb = model.tok_emb(idx)
        rms = emb * torch.rsqrt(emb.pow(2).mean(-1, keepdim=True) + model.norm_f.eps) * model.norm_f.weight
        first = rms @ model.tok_emb.weight.T  # tied head
    torch.testing.assert_close(lens[-1], logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lens[0], first, atol=1e-5, rtol=1e-5)
    assert len(mt.residual_stream(model, idx)) == 3


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_attention_backward_matches_autograd(causal, scale):
    g = torch.Generator().manual_seed(7)
    q = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    d_out = torch.randn(2, 3, 6, 4, generator=g, dtype=torch.float64)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    expected = torch.autograd.grad(out, (q, k, v), d_out)
    got = mt.attention_backward(q.detach(), k.detach(), v.detach(), d_out, is_causal=causal, scale=scale)
    for name, a, b in zip("QKV", got, expected):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=f"d{name} differs from autograd")


def test_attention_backward_cross_attention_shapes_and_errors():
    q, k, v = torch.randn(4, 3), torch.randn(7, 3), torch.randn(7, 2)
    dq, dk, dv = mt.attention_backward(q, k, v, torch.randn(4, 2))
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    with pytest.raises(ValueError, match="shapes"):
        mt.attention_backward(q, k, v, torch.randn(4, 3))
