"""KV cache, sliding window, batched generation, speculative decoding and int8 weights (mt.inference, chapter 14).

References are independent of the code under test: the model's full forward pass (recomputation without a
cache), masks and ALiBi biases written out here, ``GPT.generate`` (no cache) one prompt at a time, closed-form
distributions of speculative sampling, and quantisation computed in float64 by hand.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt
from mastering_transformers import inference as I


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_gpt(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=11, block_size=32, n_layer=2, n_head=4, n_embd=16, norm="rms", mlp="swiglu", pos="rope",
               bias=False)
    cfg.update(overrides)
    return mt.GPT(mt.GPTConfig(**cfg)).eval()


POSITION_VARIANTS = [
    dict(pos="rope"),
    dict(pos="alibi"),
    dict(pos="learned", norm="layer", mlp="gelu", bias=True),
    dict(pos="sinusoidal"),
    dict(pos="rope", n_kv_head=2),
    dict(pos="alibi", n_kv_head=1, attn_backend="mt"),
]


# --- KV cache: prefill then decode = full recomputation ------------------------------------------------


@pytest.mark.parametrize("variant", POSITION_VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_prefill_then_decode_equals_full_recomputation(variant):
    model = tiny_gpt(**variant)
    idx = torch.randint(0, 11, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(idx)[0]
    cache = I.KVCache(model.config.n_layer)
    chunks = [I.forward_with_cache(model, idx[:, :7], cache)]  # prefill
    chunks += [I.forward_with_cache(model, idx[:, t : t + 1], cache) for t in range(7, 15)]  # decode
    chunks.append(I.forward_with_cache(model, idx[:, 15:], cache))  # a chunk after decoding
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=2e-5, rtol=1e-4)
    assert len(cache) == 20 and cache.seen == 20


def test_cache_memory_matches_the_closed_form():
    model = tiny_gpt(n_kv_head=2)
    cache = I.KVCache(2)
    I.forward_with_cache(model, torch.zeros(3, 9, dtype=torch.long), cache)
    c = model.config
    assert cache.nbytes() == 2 * c.n_layer * 3 * 2 * c.head_size * 9 * 4
    assert cache.nbytes() == I.kv_cache_bytes(c.n_layer, 2, c.head_size, 9, batch=3)
    assert I.kv_cache_bytes(2, 2, 4, 100, window=10) == 2 * 2 * 2 * 4 * 10 * 4


def test_cached_generation_equals_generate_without_cache():
    model = tiny_gpt(pos="alibi", n_kv_head=2)
    idx = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(2))
    assert torch.equal(I.generate_cached(model, idx, 20, temperature=0), model.generate(idx, 20, temperature=0))
    a = I.generate_cached(model, idx, 20, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(3))
    b = model.generate(idx, 20, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_alibi_bias_offset_is_the_bias_of_the_last_rows():
    h, s = 4, 9
    slopes = mt.alibi_slopes(h)
    for offset in (0, 3, 8):
        got = mt.alibi_bias(h, s - offset, offset=offset)
        assert got.shape == (h, s - offset, s)
        for i in range(s - offset):
            for j in range(s):
                expected = -slopes * ((offset + i) - j)
                torch.testing.assert_close(got[:, i, j], expected)
    with pytest.raises(ValueError, match="offset"):
        mt.alibi_bias(h, 2, offset=-1)


def test_rope_attention_with_position_offset_equals_the_same_tokens_later_in_a_sequence():
    torch.manual_seed(0)
    attn = mt.MultiHeadAttention(16, 4, pos="rope", bias=False).eval()
    x = torch.randn(1, 10, 16)
    with torch.no_grad():
        full = attn(x, is_causal=True)
        cache = I.LayerKVCache()
        attn(x[:, :6], cache=cache)
        tail = attn(x[:, 6:], cache=cache)  # positions 6..9 come from the cache's offset
    torch.testing.assert_close(tail, full[:, 6:], atol=1e-5, rtol=1e-5)


def test_cache_refuses_masks_cross_attention_and_training_mode():
    attn = mt.MultiHeadAttention(16, 4)
    x = torch.randn(1, 3, 16)
    with pytest.raises(ValueError, match="neither kv, mask nor is_causal"):
        attn(x, is_causal=True, cache=I.LayerKVCache())
    with pytest.raises(ValueError, match="neither kv, mask nor is_causal"):
        attn(x, kv=x, cache=I.LayerKVCache())
    model = tiny_gpt().train()
    with pytest.raises(ValueError, match="eval mode"):
        I.forward_with_cache(model, torch.zeros(1, 2, dtype=torch.long), I.KVCache(2))
    with pytest.raises(ValueError, match="layers"):
        I.forward_with_cache(model.eval(), torch.zeros(1, 2, dtype=torch.long), I.KVCache(3))


# --- sliding window with a rolling buffer ---------------------------------------------------------------


def banded_forward(model, idx, window):
    """The full model with each query limited to the last ``window`` positions by an explicit mask (no cache)."""
    t = idx.shape[1]
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    band = (j <= i) & (i - j < window)
    x = model.embed(idx)
    for block in model.blocks:
        x = x + block.attn(block.norm_1(x), mask=band)
        x = x + block.mlp(block.norm_2(x))
    return model.lm_head(model.norm_f(x))


@pytest.mark.parametrize("variant", [dict(pos="rope"), dict(pos="alibi", n_kv_head=2)], ids=["rope", "alibi-gqa"])
@pytest.mark.parametrize("window,prefill", [(4, 2), (4, 9), (1, 3), (6, 6)])
def test_rolling_cache_equals_masked_full_attention_and_stays_bounded(variant, window, prefill):
    model = tiny_gpt(**variant)
    idx = torch.randint(0, 11, (2, 17), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = banded_forward(model, idx, window)
    cache = I.KVCache(model.config.n_layer, window=window)
    chunks = [I.forward_with_cache(model, idx[:, :prefill], cache)]
    for t in range(prefill, 17):
        chunks.append(I.forward_with_cache(model, idx[:, t : t + 1], cache))
        assert len(cache) == window  # the buffer never grows past W slots
    torch.testing.assert_close(torch.cat(chunks, dim=1), reference, atol=2e-5, rtol=1e-4)
    n_kv = model.config.n_kv_head or model.config.n_head
    assert cache.nbytes() == I.kv_cache_bytes(model.config.n_layer, n_kv, model.config.head_size, 17, 2, window=window)


def test_rolling_buffer_slots_hold_the_last_window_positions():
    layer = I.LayerKVCache(window=3)
    for t in range(7):
        k = torch.full((1, 1, 1, 2), float(t))
        layer.update(k, k, torch.tensor([t]))
        expected = {p for p in range(max(0, t - 2), t + 1)}
        held = {int(p) for p in layer.pos[0] if p != I.EMPTY_POSITION}
        assert held == expected
        assert layer.k[0, 0, t % 3, 0] == t  # token t sits in slot t mod W
    with pytest.raises(ValueError, match="rolled back"):
        layer.truncate(1)


def test_position_mask_by_hand():
    q = torch.tensor([[-1, 0, 1, 5]])
    k = torch.tensor([[-1, 0, 1, 2, 5]])
    got = I.position_mask(q, k, window=2)[0, 0]
    for a in range(4):
        for b in range(5):
            qa, kb = int(q[0, a]), int(k[0, b])
            if qa < 0:
                expected = kb < 0
            else:
                expected = 0 <= kb <= qa and qa - kb < 2
            assert bool(got[a, b]) == expected, (qa, kb)


# --- batched generation of prompts of different lengths ---------------------------------------------------


@pytest.mark.parametrize("variant", [dict(pos="rope"), dict(pos="learned", norm="layer", mlp="gelu"),
                                     dict(pos="alibi", n_kv_head=2)], ids=["rope", "learned", "alibi-gqa"])
def test_batched_generation_equals_one_prompt_at_a_time(variant):
    model = tiny_gpt(**variant)
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 11, (n,), generator=g).tolist() for n in (1, 6, 3, 9)]
    batched = I.generate_batch(model, prompts, 12, temperature=0)
    for p, row in zip(prompts, batched):
        alone = model.generate(torch.tensor([p]), 12, temperature=0)[0].tolist()  # no cache, no padding
        assert row == alone


def test_pad_left_positions():
    idx, pos = I.pad_left([[4, 5], [7], [1, 2, 3]], pad_id=9)
    assert idx.tolist() == [[9, 4, 5], [9, 9, 7], [1, 2, 3]]
    assert pos.tolist() == [[-1, 0, 1], [-1, -1, 0], [0, 1, 2]]
    with pytest.raises(ValueError):
        I.pad_left([])


# --- speculative decoding ------------------------------------------------------------------------------


def random_dist(v, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(v, generator=g, dtype=torch.float64) * 1.5, dim=-1)


def test_acceptance_probability_is_min_one_p_over_q():
    p, q = random_dist(6, 0), random_dist(6, 1)
    u = (torch.arange(100000, dtype=torch.float64) + 0.5) / 100000  # a fine uniform grid on (0, 1)
    for x in range(6):
        rate = I.speculative_accept(p.expand(len(u), 6), q.expand(len(u), 6), torch.full((len(u),), x), u)
        assert rate.double().mean().item() == pytest.approx(min(1.0, (p[x] / q[x]).item()), abs=2e-5)


def test_one_speculative_step_gives_exactly_the_target_distribution():
    for seed in range(5):
        p, q = random_dist(7, 2 * seed), random_dist(7, 2 * seed + 1)
        accept = torch.minimum(torch.ones(7, dtype=torch.float64), p / q)  # P(accept | draft x)
        residual = I.residual_distribution(p, q)
        hand = torch.clamp(p - q, min=0) / torch.clamp(p - q, min=0).sum()
        torch.testing.assert_close(residual, hand)
        p_out = q * accept + (1 - (q * accept).sum()) * residual  # accepted as x, or rejected and resampled as x
        torch.testing.assert_close(p_out, p, atol=1e-12, rtol=0)
    same = random_dist(5, 3)
    torch.testing.assert_close(I.residual_distribution(same, same), same)


def exact_two_token_distribution(model, prompt, temperature):
    """P(x1, x2 | prompt) of plain sampling from ``model``, by enumeration with full forward passes: (V, V)."""
    v = model.config.vocab_size
    with torch.no_grad():
        p1 = torch.softmax(model(prompt)[0][0, -1].double() / temperature, -1)
        ext = torch.cat([prompt.expand(v, -1), torch.arange(v)[:, None]], dim=1)
        p2 = torch.softmax(model(ext)[0][:, -1].double() / temperature, -1)
    return p1[:, None] * p2


def chi_square_p_value(counts, probs):
    expected = probs * counts.sum()
    stat = ((counts - expected) ** 2 / expected).sum()
    return torch.special.gammaincc(torch.tensor((len(probs) - 1) / 2.0), stat / 2).item()


def test_speculative_samples_follow_the_target_distribution_chi_square():
    """Pearson's chi-square test, 9 cells of two-token continuations, 800 draws, fixed seeds."""
    target = tiny_gpt(seed=3, vocab_size=3, n_layer=1, n_embd=8, n_head=2, init_std=0.25)
    draft = tiny_gpt(seed=4, vocab_size=3, n_layer=1, n_embd=8, n_head=2, init_std=0.25)
    prompt = torch.tensor([[1, 2, 0]])
    exact = exact_two_token_distribution(target, prompt, 1.0).flatten()
    draft_exact = exact_two_token_distribution(draft, prompt, 1.0).flatten()
    assert (exact * 800).min() > 10 and (exact - draft_exact).abs().sum() > 1  # a test with power
    counts = torch.zeros(9, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    accepted = proposed = 0
    for _ in range(800):
        out, stats = I.speculative_generate(target, draft, prompt, 2, k=2, generator=g)
        counts[out[0, 3] * 3 + out[0, 4]] += 1
        accepted, proposed = accepted + stats["accepted"], proposed + stats["proposed"]
    assert chi_square_p_value(counts, exact) > 0.01
    assert chi_square_p_value(counts, draft_exact) < 1e-6  # the same draws are clearly not from the draft
    assert 0.2 < accepted / proposed < 0.95


def test_speculative_greedy_equals_target_greedy_and_counts_calls():
    target = tiny_gpt(seed=3, n_layer=2)
    draft = tiny_gpt(seed=4, n_layer=1)
    prompt = torch.randint(0, 11, (1, 4), generator=torch.Generator().manual_seed(6))
    expected = target.generate(prompt, 25, temperature=0)
    for k in (1, 3, 5):
        out, stats = I.speculative_generate(target, draft, prompt, 25, k=k, temperature=0)
        assert torch.equal(out, expected)
        assert stats["target_calls"] == stats["rounds"] + 1  # one pass per round, plus the prefill
        assert stats["accepted"] <= stats["proposed"]
    out, stats = I.speculative_generate(target, target, prompt, 25, k=4, temperature=0.7,
                                        generator=torch.Generator().manual_seed(0))
    assert stats["accepted"] == stats["proposed"]  # a draft equal to the target is always accepted
    assert stats["rounds"] == 5  # 5 tokens per round: 4 accepted and the bonus token


# --- GQA derived by mean-pooling ------------------------------------------------------------------------


def test_to_grouped_query_pools_key_value_heads_by_group():
    model = tiny_gpt(pos="rope", n_head=4, n_embd=16, bias=True, norm="layer", mlp="gelu")
    same = I.to_grouped_query(model, 4)
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(same(idx)[0], model(idx)[0])
    gqa = I.to_grouped_query(model, 2)
    d = model.config.head_size
    for name in ("k_proj", "v_proj"):
        w = getattr(model.blocks[1].attn, name).weight
        got = getattr(gqa.blocks[1].attn, name).weight
        for g in range(2):
            torch.testing.assert_close(got[g * d : (g + 1) * d], (w[2 * g * d : (2 * g + 1) * d] + w[(2 * g + 1) * d : (2 * g + 2) * d]) / 2)
    b = model.blocks[0].attn.k_proj.bias
    torch.testing.assert_close(I.to_grouped_query(model, 1).blocks[0].attn.k_proj.bias, b.view(4, d).mean(0))
    assert gqa.config.n_kv_head == 2 and gqa.blocks[0].attn.k_proj.weight.shape == (2 * d, 16)
    with pytest.raises(ValueError, match="divisor"):
        I.to_grouped_query(model, 3)


# --- int8 weights --------------------------------------------------------------------------------------


def test_quantize_int8_per_channel_against_a_float64_reference():
    g = torch.Generator().manual_seed(8)
    w = torch.randn(5, 13, generator=g) * torch.tensor([0.01, 1.0, 3.0, 0.2, 0.0])[:, None]
    q, scale = I.quantize_int8(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (5,)
    w64 = w.double()
    for r in range(5):
        amax = w64[r].abs().max().item()
        s = amax / 127 if amax > 0 else 1.0
        assert scale[r].item() == pytest.approx(s, rel=1e-6)
        expected = [max(-127, min(127, round(x))) for x in (w64[r] / scale[r].double()).tolist()]
        assert q[r].tolist() == expected
        assert q[r].abs().max() == (127 if amax > 0 else 0)
    err = (I.dequantize_int8(q, scale) - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-7).all()


def test_int8_linear_and_quantized_model():
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 7)
    qlin = I.Int8Linear.from_linear(lin)
    x = torch.randn(3, 4, 12)
    q, s = I.quantize_int8(lin.weight)
    torch.testing.assert_close(qlin(x), F.linear(x, q.double().mul(s.double()[:, None]).float(), lin.bias),
                               atol=1e-5, rtol=1e-5)
    model = tiny_gpt(n_embd=32)
    qmodel = I.quantize_linears(model)
    linears = [m for m in qmodel.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == [qmodel.lm_head]  # only the head tied to the embedding stays in float
    assert sum(isinstance(m, I.Int8Linear) for m in qmodel.modules()) == 2 * (4 + 3)
    assert isinstance(model.blocks[0].attn.q_proj, torch.nn.Linear)  # the original is untouched
    n_lin = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not model.lm_head)
    rows = sum(m.weight.shape[0] for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not model.lm_head)
    assert I.model_bytes(model) - I.model_bytes(qmodel) == 4 * n_lin - (n_lin + 4 * rows)
    idx = torch.randint(0, 11, (2, 10), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        a, b = model(idx)[0], qmodel(idx)[0]
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    assert torch.equal(I.generate_cached(qmodel, idx[:, :3], 5, temperature=0)[:, :3], idx[:, :3])


def test_generate_validates_arguments():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="max_new_tokens"):
        I.generate_cached(model, torch.zeros(1, 2, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="one prompt"):
        I.speculative_generate(model, model, torch.zeros(2, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="window"):
        I.KVCache(2, window=0)
    assert math.isfinite(I.kv_cache_bytes(1, 1, 1, 1))
