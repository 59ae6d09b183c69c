"""mt.DecoderBlock against a reference written with torch.nn.functional and an explicit softmax, and against
torch.nn.TransformerDecoderLayer (norm_first=True) with copied weights; causality of the decoder; padding
invariance of the encoder, its three pooling heads and the encoder-decoder; greedy generation; chapter 1's task;
clear errors on bad input.
"""

import math
import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mastering_transformers as mt


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is as fast, and two threads on a busy 2-core machine can be 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise(module, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
            if name.endswith("norm_1.weight") or name.endswith("norm_2.weight") or name.endswith("norm_3.weight"):
                p.add_(1.0)  # LayerNorm gains around 1, as after training
    return module


# ---------------------------------------------------------------------------------------------------
# A reference decoder block from functional pieces
# ---------------------------------------------------------------------------------------------------


def attention_reference(x_q, x_kv, attn, keep):
    """Multi-head attention written out: projections, per-head q k^T / sqrt(D), explicit softmax, W_O.

    keep: bool (B, T, S), True where query t may look at key s. Returns output (B, T, C), weights (B, H, T, S).
    """
    b, t, c = x_q.shape
    s, h = x_kv.shape[1], attn.n_head
    d = c // h
    q = F.linear(x_q, attn.q_proj.weight, attn.q_proj.bias).view(b, t, h, d).permute(0, 2, 1, 3)
    k = F.linear(x_kv, attn.k_proj.weight, attn.k_proj.bias).view(b, s, h, d).permute(0, 2, 1, 3)
    v = F.linear(x_kv, attn.v_proj.weight, attn.v_proj.bias).view(b, s, h, d).permute(0, 2, 1, 3)
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(d)
    scores = scores - scores.max(dim=-1, keepdim=True).values  # stable; masked entries become exp(.)=0 below
    e = torch.exp(scores) * keep[:, None].to(scores.dtype)
    w = e / e.sum(dim=-1, keepdim=True)
    out = torch.einsum("bhts,bhsd->bhtd", w, v).permute(0, 2, 1, 3).reshape(b, t, c)
    return F.linear(out, attn.o_proj.weight, attn.o_proj.bias), w


def decoder_block_reference(block, x, memory, src_lengths=None):
    c = x.shape[-1]
    b, t, s = x.shape[0], x.shape[1], memory.shape[1]

    def ln(norm, z):
        return F.layer_norm(z, (c,), norm.weight, norm.bias, eps=1e-5)

    causal = torch.ones(t, t, dtype=torch.bool).tril().expand(b, t, t)
    src_keep = torch.ones(b, t, s, dtype=torch.bool)
    if src_lengths is not None:
        src_keep = (torch.arange(s)[None, :] < src_lengths[:, None])[:, None, :].expand(b, t, s)
    x = x + attention_reference(ln(block.norm_1, x), ln(block.norm_1, x), block.self_attn, causal)[0]
    y, w = attention_reference(ln(block.norm_2, x), memory, block.cross_attn, src_keep)
    x = x + y
    m = block.mlp
    h = F.gelu(F.linear(ln(block.norm_3, x), m.fc_in.weight, m.fc_in.bias))
    return x + F.linear(h, m.fc_out.weight, m.fc_out.bias), w


def random_case(seed):
    rng = random.Random(seed)
    n_head = rng.choice([1, 2, 4])
    d_model = n_head * rng.choice([4, 8])
    b, t, s = rng.randint(1, 3), rng.randint(1, 7), rng.randint(1, 9)
    block = randomise(mt.DecoderBlock(d_model, n_head, d_ff=rng.choice([None, 3 * d_model])), seed)
    g = torch.Generator().manual_seed(seed)
    x, memory = torch.randn(b, t, d_model, generator=g), torch.randn(b, s, d_model, generator=g)
    lengths = torch.randint(1, s + 1, (b,), generator=g)
    return block, x, memory, lengths


@pytest.mark.parametrize("seed", range(8))
def test_decoder_block_matches_functional_reference(seed):
    block, x, memory, lengths = random_case(seed)
    expected, expected_w = decoder_block_reference(block, x, memory)
    torch.testing.assert_close(block(x, memory), expected, atol=1e-5, rtol=1e-4)
    # with a source padding mask, and asking for the cross-attention weights
    expected, expected_w = decoder_block_reference(block, x, memory, lengths)
    out, w = block(x, memory, memory_mask=mt.padding_mask(lengths, memory.shape[1]), need_weights=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w, expected_w, atol=1e-6, rtol=1e-5)
    assert w.shape == (x.shape[0], block.cross_attn.n_head, x.shape[1], memory.shape[1])
    pad = torch.arange(memory.shape[1])[None, :] >= lengths[:, None]
    assert (w.masked_select(pad[:, None, None, :].expand_as(w)) == 0).all()  # no weight on padding


@pytest.mark.parametrize("seed", range(4))
def test_decoder_block_matches_torch_transformer_decoder_layer(seed):
    block, x, memory, lengths = random_case(100 + seed)
    d_model, n_head = block.d_model, block.self_attn.n_head
    layer = nn.TransformerDecoderLayer(d_model, n_head, dim_feedforward=block.mlp.d_ff, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
    with torch.no_grad():
        for ours, theirs in [(block.self_attn, layer.self_attn), (block.cross_attn, layer.multihead_attn)]:
            theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
            theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            theirs.out_proj.weight.copy_(ours.o_proj.weight)
            theirs.out_proj.bias.copy_(ours.o_proj.bias)
        layer.linear1.weight.copy_(block.mlp.fc_in.weight)
        layer.linear1.bias.copy_(block.mlp.fc_in.bias)
        layer.linear2.weight.copy_(block.mlp.fc_out.weight)
        layer.linear2.bias.copy_(block.mlp.fc_out.bias)
        for ours, theirs in [(block.norm_1, layer.norm1), (block.norm_2, layer.norm2), (block.norm_3, layer.norm3)]:
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
    t, s = x.shape[1], memory.shape[1]
    causal = nn.Transformer.generate_square_subsequent_mask(t)
    pad = torch.arange(s)[None, :] >= lengths[:, None]  # torch's convention: True = ignore
    expected = layer(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=pad)
    got = block(x, memory, memory_mask=mt.padding_mask(lengths, s))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_decoder_block_parameter_count_closed_form():
    for c, h in [(8, 2), (32, 4), (64, 8)]:
        # 3 LayerNorms (2C each), 2 attentions (4C^2 + 4C each), MLP C -> 4C -> C (8C^2 + 5C)
        assert mt.count_parameters(mt.DecoderBlock(c, h)) == 16 * c * c + 19 * c
        assert mt.count_parameters(mt.Block(c, h)) == 12 * c * c + 13 * c  # the encoder block, for contrast


# ---------------------------------------------------------------------------------------------------
# Causality and padding
# ---------------------------------------------------------------------------------------------------


def small_encoder_decoder(seed=0, **kw):
    torch.manual_seed(seed)
    return mt.EncoderDecoder(13, d_model=16, n_head=2, n_enc_layer=2, n_dec_layer=2, **kw).eval()


@pytest.mark.parametrize("t_change", [0, 3, 6])
def test_decoder_is_causal(t_change):
    model = small_encoder_decoder()
    g = torch.Generator().manual_seed(t_change)
    src, tgt = torch.randint(0, 13, (3, 5), generator=g), torch.randint(0, 13, (3, 8), generator=g)
    changed = tgt.clone()
    changed[:, t_change:] = (changed[:, t_change:] + 1 + torch.randint(0, 11, changed[:, t_change:].shape,
                                                                       generator=g)) % 13
    with torch.no_grad():
        a, _ = model(src, tgt)
        b, _ = model(src, changed)
    torch.testing.assert_close(a[:, :t_change], b[:, :t_change], atol=1e-6, rtol=0)  # the past is untouched
    assert (a[:, t_change] - b[:, t_change]).abs().max() > 1e-3  # the changed position itself does change


def test_encoder_is_bidirectional():
    torch.manual_seed(0)
    enc = mt.TransformerEncoder(13, d_model=16, n_head=2, n_layer=1).eval()
    idx = torch.randint(0, 13, (2, 6), generator=torch.Generator().manual_seed(0))
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 13
    with torch.no_grad():
        assert (enc(idx)[:, 0] - enc(changed)[:, 0]).abs().max() > 1e-3  # the first token sees the last


def padded_batch(seqs, pad_id_gen):
    t = max(len(s) for s in seqs)
    ids = torch.randint(0, 13, (len(seqs), t), generator=pad_id_gen)  # padding holds arbitrary token ids
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    return ids, torch.tensor([len(s) for s in seqs])


def some_sequences(seed, n=4, vocab=13):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g) for _ in range(n)], g


@pytest.mark.parametrize("pool", mt.encoder_decoder.POOLS)
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_pooled_vector_ignores_padding(pool, positions):
    torch.manual_seed(1)
    model = mt.EncoderClassifier(13, 3, pool=pool, d_model=16, n_head=4, n_layer=2, positions=positions,
                                 max_positions=12).eval()
    with torch.no_grad():  # LayerNorm gains away from 1 so the test is not blind to them
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    seqs, g = some_sequences(2)
    ids, lengths = padded_batch(seqs, g)
    extra = torch.randint(0, 13, (len(seqs), 3), generator=g)  # three more padding tokens
    with torch.no_grad():
        alone = torch.stack([model.features(s[None])[0] for s in seqs])
        batched = model.features(ids, lengths)
        longer = model.features(torch.cat([ids, extra], dim=1), lengths)
        logits = model(ids, lengths)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(longer, alone, atol=1e-5, rtol=1e-4)
    assert logits.shape == (len(seqs), 3)
    # and the padding does matter when the lengths are not given (the test can fail)
    with torch.no_grad():
        ignored = model.features(torch.cat([ids, extra], dim=1))
    assert (ignored - alone).abs().max() > 1e-3


def test_mean_pool_matches_per_sequence_average():
    g = torch.Generator().manual_seed(0)
    states, lengths = torch.randn(4, 7, 5, generator=g), torch.tensor([7, 1, 3, 5])
    expected = torch.stack([states[i, :n].mean(0) for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(mt.mean_pool(states, lengths), expected)
    torch.testing.assert_close(mt.mean_pool(states), states.mean(1))


def test_attention_pool_is_a_softmax_average_of_values():
    torch.manual_seed(0)
    pool = mt.AttentionPool(8, n_head=1)
    g = torch.Generator().manual_seed(1)
    states, lengths = torch.randn(3, 6, 8, generator=g), torch.tensor([6, 2, 4])
    out, w = pool(states, lengths, need_weights=True)
    a = pool.attn
    q = F.linear(pool.query[0, 0], a.q_proj.weight, a.q_proj.bias)  # (C,)
    for i, n in enumerate(lengths.tolist()):
        k = F.linear(states[i, :n], a.k_proj.weight, a.k_proj.bias)
        v = F.linear(states[i, :n], a.v_proj.weight, a.v_proj.bias)
        weights = torch.softmax(k @ q / math.sqrt(8), dim=0)
        torch.testing.assert_close(w[i, 0, :n], weights, atol=1e-6, rtol=1e-5)
        assert (w[i, 0, n:] == 0).all()
        torch.testing.assert_close(out[i], F.linear(weights @ v, a.o_proj.weight, a.o_proj.bias), atol=1e-5,
                                   rtol=1e-4)


def test_encoder_decoder_ignores_source_padding():
    model = small_encoder_decoder(3)
    seqs, g = some_sequences(5)
    src, lengths = padded_batch(seqs, g)
    tgt = torch.randint(0, 13, (len(seqs), 4), generator=g)
    with torch.no_grad():
        batched, w = model(src, tgt, src_lengths=lengths, need_weights=True)
        fused, _ = model(src, tgt, src_lengths=lengths)  # the path without weights (PyTorch's kernel)
        for i, s in enumerate(seqs):
            alone, _ = model(s[None], tgt[i : i + 1])
            torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(fused[i], alone[0], atol=1e-5, rtol=1e-4)
    assert w.shape == (len(seqs), 2, 2, 4, src.shape[1])
    for i, n in enumerate(lengths.tolist()):
        assert (w[i, ..., n:] == 0).all()
        torch.testing.assert_close(w[i].sum(-1), torch.ones(2, 2, 4))


# ---------------------------------------------------------------------------------------------------
# Generation and the task
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 5])
def test_greedy_generation_length_determinism_and_reference(length):
    model = small_encoder_decoder(4, dropout=0.2)
    model.train()  # generate must switch dropout off and restore the mode
    src = torch.randint(0, 13, (3, 6), generator=torch.Generator().manual_seed(0))
    tokens, w = model.generate(src, length, bos=12)
    again, _ = model.generate(src, length, bos=12)
    assert model.training
    assert tokens.shape == (3, length) and tokens.dtype == torch.long and w is None
    assert torch.equal(tokens, again)
    # reference: teacher-force the model's own tokens and check each is the argmax of the step before
    model.eval()
    with torch.no_grad():
        logits, _ = model(src, torch.cat([torch.full((3, 1), 12), tokens[:, :-1]], dim=1))
    assert torch.equal(logits.argmax(-1), tokens)
    _, w = model.generate(src, length, bos=12, need_weights=True)
    assert w.shape == (3, 2, 2, length, 6)


def test_reversal_batch_is_chapter_1_task():
    src, tgt_in, tgt = mt.reversal_batch(4, 7, torch.Generator().manual_seed(3))
    again = mt.reversal_batch(4, 7, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip((src, tgt_in, tgt), again))
    assert src.shape == tgt_in.shape == tgt.shape == (4, 7)
    assert ((0 <= src) & (src <= 9)).all()
    assert torch.equal(tgt, src.flip(1))
    assert (tgt_in[:, 0] == 10).all() and torch.equal(tgt_in[:, 1:], tgt[:, :-1])
    # chapter 1 draws the source with torch.randint(0, 10, (n, length), generator=g)
    assert torch.equal(src, torch.randint(0, 10, (4, 7), generator=torch.Generator().manual_seed(3)))


def test_encoder_decoder_learns_to_copy():
    """End to end: a tiny model must fit a fixed batch of 4-digit copies (it fails if the decoder cannot
    read the encoder)."""
    torch.manual_seed(0)
    model = mt.EncoderDecoder(11, d_model=32, n_head=2, n_enc_layer=1, n_dec_layer=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    src = torch.randint(0, 10, (32, 4), generator=torch.Generator().manual_seed(0))
    tgt_in = torch.cat([torch.full((32, 1), 10), src[:, :-1]], dim=1)
    for _ in range(60):
        logits, _ = model(src, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, 11), src.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred, _ = model.generate(src, 4, bos=10)
    assert (pred == src).float().mean() > 0.95


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


def test_clear_errors():
    block = mt.DecoderBlock(8, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_model=8\)"):
        block(torch.randn(3, 8), torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match=r"memory must have shape \(B, T, d_model=8\)"):
        block(torch.randn(1, 3, 8), torch.randn(1, 4, 6))
    with pytest.raises(ValueError, match="same batch size"):
        block(torch.randn(2, 3, 8), torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="does not broadcast"):
        block(torch.randn(1, 3, 8), torch.randn(1, 4, 8), memory_mask=torch.ones(1, 1, 1, 5, dtype=torch.bool))

    model = mt.EncoderDecoder(11, d_model=8, n_head=2, n_enc_layer=1, n_dec_layer=1)
    with pytest.raises(ValueError, match=r"src must be token ids of shape \(B, T\)"):
        model(torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"outside \[0, 11\)"):
        model(torch.full((2, 3), 11), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="same batch size"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=3\]"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="length must be a positive int"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 0, bos=10)
    with pytest.raises(ValueError, match="bos must be a target token id"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 2, bos=11)

    with pytest.raises(ValueError, match="pool must be one of"):
        mt.EncoderClassifier(11, 2, pool="max")
    with pytest.raises(ValueError, match="n_classes >= 2"):
        mt.EncoderClassifier(11, 1)
    with pytest.raises(ValueError, match="positions must be one of"):
        mt.TransformerEncoder(11, positions="rope")
    with pytest.raises(ValueError, match="need max_positions"):
        mt.TransformerEncoder(11, positions="learned")
    with pytest.raises(ValueError, match="exceeds max_positions=4"):
        mt.TransformerEncoder(11, d_model=8, n_head=2, positions="learned", max_positions=4)(
            torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="n_head must divide d_model"):
        mt.DecoderBlock(10, 4)
    with pytest.raises(ValueError, match=r"states must have shape \(B, S, C\)"):
        mt.mean_pool(torch.randn(3, 4))
    with pytest.raises(ValueError, match="need n >= 1 and length >= 1"):
        mt.reversal_batch(2, 0)
