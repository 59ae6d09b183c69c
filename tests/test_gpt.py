"""mt.GPTConfig and mt.GPT against independent references.

- the parameter count against a closed form written out here, for GPT-2- and Llama-shaped configs;
- a forward pass written from torch primitives in this file (F.embedding, F.layer_norm / F.rms_norm, explicit
  attention with a causal mask, RoPE as complex multiplication, ALiBi slopes from the paper) with the model's
  weights copied in: a GPT-2 config, a Llama-style config and an ALiBi config;
- causality (changing later tokens never changes earlier logits) for every positional scheme, norm and MLP;
- the "mt" and "sdpa" attention backends give the same logits and gradients;
- weight tying shares storage; GPT-2's initialisation statistics; loss at init ~ ln(V); ignore_index;
- the optimizer's decay groups; greedy generation against a hand-written arg-max loop; stop tokens;
- clear errors on bad configs and too-long sequences.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt

V = 37


def config(**kw):
    base = dict(vocab_size=V, block_size=12, n_layer=2, n_head=4, n_embd=16)
    base.update(kw)
    return mt.GPTConfig(**base)


GPT2 = dict()
LLAMA = dict(norm="rms", mlp="swiglu", pos="rope", bias=False, n_kv_head=2)
VARIANTS = {
    "gpt2": GPT2,
    "llama": LLAMA,
    "sinusoidal_untied": dict(pos="sinusoidal", tie_weights=False),
    "alibi_rms": dict(pos="alibi", norm="rms"),
    "rope_gelu_mqa": dict(pos="rope", n_kv_head=1),
    "swiglu_bias_learned": dict(mlp="swiglu", bias=True, d_ff=24),
    "layer_nobias_alibi_gqa": dict(pos="alibi", bias=False, n_kv_head=2, n_head=4),
}


def randomise(model, seed, scale=0.3):
    """Every parameter random (norm gains around 1), so that no term of the forward can hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
            if name.endswith("norm_1.weight") or name.endswith("norm_2.weight") or name == "norm_f.weight":
                p.add_(1.0)
    return model


# --- parameter count in closed form ------------------------------------------------------------------


def closed_form_parameters(c: mt.GPTConfig) -> tuple[int, int]:
    """(total, non-embedding) parameters from the sizes alone."""
    C, L, H = c.n_embd, c.n_layer, c.n_head
    kv = (c.n_kv_head or H) * (C // H)  # width of the K and V projections
    b = 1 if c.bias else 0
    attn = C * C + 2 * C * kv + C * C + b * (C + 2 * kv + C)  # W_Q, W_K, W_V, W_O (+ biases)
    if c.mlp == "gelu":
        f = c.d_ff or 4 * C
        mlp = 2 * C * f + b * (f + C)
    else:  # SwiGLU: hidden = ceil(8C/3) rounded up to a multiple of 8; three matrices
        f = c.d_ff or 8 * math.ceil(math.ceil(8 * C / 3) / 8)
        mlp = 3 * C * f + b * (2 * f + C)
    norm = (2 * C if c.bias else C) if c.norm == "layer" else C
    non_embedding = L * (attn + mlp + 2 * norm) + norm  # blocks + final norm
    embeddings = c.vocab_size * C + (c.block_size * C if c.pos == "learned" else 0)
    head = 0 if c.tie_weights else c.vocab_size * C
    return non_embedding + embeddings + head, non_embedding


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("n_layer", [1, 3])
def test_parameter_count_matches_closed_form(name, n_layer):
    c = config(n_layer=n_layer, **VARIANTS[name])
    model = mt.GPT(c)
    total, non_embedding = closed_form_parameters(c)
    counted = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert counted == total
    assert model.num_parameters() == total
    assert model.num_parameters(non_embedding=True) == non_embedding
    assert mt.count_parameters(model) == total


def test_gpt2_small_shape_has_124m_parameters():
    # GPT-2 small: 12 layers, 12 heads, width 768, vocab 50257, context 1024, biases, tied head: 124,439,808.
    c = mt.GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    total, _ = closed_form_parameters(c)
    assert total == 124_439_808
    with torch.device("meta"):  # no memory, no time: shapes only
        model = mt.GPT(c)
    assert model.num_parameters() == 124_439_808


# --- reference forward from torch primitives --------------------------------------------------------


def reference_forward(model: mt.GPT, idx: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V) computed from the state dict with torch primitives only."""
    c = model.config
    w = {k: v.detach() for k, v in model.state_dict().items()}
    C, H = c.n_embd, c.n_head
    D, Hkv = C // H, c.n_kv_head or H
    B, T = idx.shape

    def norm(x, prefix):
        if c.norm == "layer":
            return F.layer_norm(x, (C,), w[prefix + ".weight"], w.get(prefix + ".bias"), eps=1e-5)
        return F.rms_norm(x, (C,), w[prefix + ".weight"], eps=1e-6)

    def linear(x, prefix):
        return F.linear(x, w[prefix + ".weight"], w.get(prefix + ".bias"))

    def rope(x):  # (B, h, T, D): pairs (2i, 2i+1) as complex numbers times exp(j p theta_i)
        theta = c.rope_base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
        angle = torch.arange(T, dtype=torch.float64)[:, None] * theta  # (T, D/2)
        z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], D // 2, 2).contiguous())
        return torch.view_as_real(z * torch.polar(torch.ones_like(angle), angle)).flatten(-2).to(x.dtype)

    x = F.embedding(idx, w["tok_emb.weight"])
    if c.pos == "learned":
        x = x + w["pos_emb.weight"][:T]
    elif c.pos == "sinusoidal":
        p = torch.arange(T, dtype=torch.float64)[:, None]
        omega = 10000.0 ** (-torch.arange(0, C, 2, dtype=torch.float64) / C)
        pe = torch.zeros(T, C, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(p * omega), torch.cos(p * omega)
        x = x + (pe * c.init_std * math.sqrt(2)).float()
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    slopes = torch.tensor([2.0 ** (-8.0 * h / H) for h in range(1, H + 1)])  # H a power of 2 here
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    for layer in range(c.n_layer):
        pre = f"blocks.{layer}."
        h = norm(x, pre + "norm_1")
        q = linear(h, pre + "attn.q_proj").view(B, T, H, D).transpose(1, 2)
        k = linear(h, pre + "attn.k_proj").view(B, T, Hkv, D).transpose(1, 2)
        v = linear(h, pre + "attn.v_proj").view(B, T, Hkv, D).transpose(1, 2)
        if c.pos == "rope":
            q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(D)  # (B, H, T, T)
        if c.pos == "alibi":
            scores = scores - slopes[:, None, None] * distance
        scores = scores.masked_fill(future, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(y, pre + "attn.o_proj")
        h = norm(x, pre + "norm_2")
        if c.mlp == "gelu":
            x = x + linear(F.gelu(linear(h, pre + "mlp.fc_in")), pre + "mlp.fc_out")
        else:
            gate, up = linear(h, pre + "mlp.w_gate"), linear(h, pre + "mlp.w_up")
            x = x + linear(F.silu(gate) * up, pre + "mlp.w_down")
    head = w["tok_emb.weight"] if c.tie_weights else w["lm_head.weight"]
    return norm(x, "norm_f") @ head.T


@pytest.mark.parametrize("name", ["gpt2", "llama", "alibi_rms", "sinusoidal_untied", "swiglu_bias_learned"])
@pytest.mark.parametrize("backend", ["mt", "sdpa"])
def test_forward_matches_reference_built_from_torch_primitives(name, backend):
    torch.manual_seed(0)
    model = randomise(mt.GPT(config(attn_backend=backend, **VARIANTS[name])), seed=1).eval()
    idx = torch.randint(0, V, (3, 12), generator=torch.Generator().manual_seed(2))
    logits, loss = model(idx)
    assert loss is None and logits.shape == (3, 12, V)
    torch.testing.assert_close(logits, reference_forward(model, idx), atol=1e-4, rtol=1e-4)


# --- causality and backends ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("backend", ["mt", "sdpa"])
def test_changing_future_tokens_never_changes_earlier_logits(name, backend):
    torch.manual_seed(0)
    model = randomise(mt.GPT(config(attn_backend=backend, **VARIANTS[name])), seed=3).eval()
    g = torch.Generator().manual_seed(4)
    idx = torch.randint(0, V, (2, 12), generator=g)
    base, _ = model(idx)
    for t0 in (1, 5, 11):
        changed = idx.clone()
        changed[:, t0:] = (changed[:, t0:] + torch.randint(1, V, changed[:, t0:].shape, generator=g)) % V
        logits, _ = model(changed)
        torch.testing.assert_close(logits[:, :t0], base[:, :t0], atol=1e-5, rtol=0)
        assert (logits[:, t0] - base[:, t0]).abs().max() > 1e-3  # the changed position itself does change


@pytest.mark.parametrize("name", list(VARIANTS))
def test_mt_and_sdpa_backends_agree_on_logits_and_gradients(name):
    torch.manual_seed(0)
    a = randomise(mt.GPT(config(attn_backend="mt", **VARIANTS[name])), seed=5)
    b = mt.GPT(config(attn_backend="sdpa", **VARIANTS[name]))
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(6))
    la, loss_a = a(idx, idx.roll(-1, dims=1))
    lb, loss_b = b(idx, idx.roll(-1, dims=1))
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
    loss_a.backward()
    loss_b.backward()
    for (name_a, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-4, msg=name_a)


@pytest.mark.parametrize("pos", ["sinusoidal", "rope", "alibi"])
def test_formula_positions_accept_longer_sequences_and_stay_causal(pos):
    torch.manual_seed(0)
    model = mt.GPT(config(pos=pos)).eval()
    idx = torch.randint(0, V, (1, 30), generator=torch.Generator().manual_seed(7))
    long, _ = model(idx)
    short, _ = model(idx[:, :12])
    assert long.shape == (1, 30, V)
    torch.testing.assert_close(long[:, :12], short, atol=1e-5, rtol=1e-5)


# --- the positional hook of MultiHeadAttention --------------------------------------------------------


def attention_reference(mha, x, pos, mask=None, q_pos=None):
    """Self-attention with RoPE (complex multiplication) or ALiBi (bias from the paper's slopes), written out."""
    B, T, C = x.shape
    H, D = mha.n_head, mha.d_head
    Hkv = mha.n_kv_head
    q = mha.q_proj(x).view(B, T, H, D).transpose(1, 2)
    k = mha.k_proj(x).view(B, T, Hkv, D).transpose(1, 2)
    v = mha.v_proj(x).view(B, T, Hkv, D).transpose(1, 2)
    p = torch.arange(T) if q_pos is None else q_pos
    if pos == "rope":
        theta = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
        rot = torch.polar(torch.ones(T, D // 2, dtype=torch.float64), p.double()[:, None] * theta)

        def rope(z):
            zc = torch.view_as_complex(z.double().reshape(B, -1, T, D // 2, 2).contiguous())
            return torch.view_as_real(zc * rot).flatten(-2).float()

        q, k = rope(q), rope(k)
    k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)
    if pos == "alibi":
        slopes = torch.tensor([2.0 ** (-8.0 * h / H) for h in range(1, H + 1)])
        scores = scores - slopes[:, None, None] * (p[:, None] - p[None, :]).float()
    allowed = torch.ones(T, T, dtype=torch.bool).tril()
    if mask is not None:
        allowed = allowed & mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    return mha.o_proj(y)


@pytest.mark.parametrize("pos", ["rope", "alibi"])
@pytest.mark.parametrize("backend", ["mt", "sdpa"])
@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_attention_hook_with_padding_mask_and_positions_matches_reference(pos, backend, n_kv_head):
    torch.manual_seed(0)
    mha = mt.MultiHeadAttention(16, 4, n_kv_head=n_kv_head, pos=pos, backend=backend).eval()
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(mha(x, is_causal=True), attention_reference(mha, x, pos), atol=1e-5, rtol=1e-4)
        pad = mt.padding_mask(torch.tensor([7, 4]), 7)  # (B, 1, 1, T): the second sequence has 3 padded keys
        causal_pad = pad & mt.causal_mask(7)
        torch.testing.assert_close(
            mha(x, mask=causal_pad), attention_reference(mha, x, pos, mask=pad), atol=1e-5, rtol=1e-4
        )
        positions = torch.arange(7) + 5
        torch.testing.assert_close(
            mha(x, is_causal=True, positions=positions),
            attention_reference(mha, x, pos, q_pos=positions),
            atol=1e-5,
            rtol=1e-4,
        )


@pytest.mark.parametrize("pos", ["rope", "alibi"])
def test_shifting_every_position_leaves_relative_schemes_unchanged(pos):
    # RoPE and ALiBi depend on offsets only: positions 0..T-1 and 100..T+99 give the same self-attention.
    torch.manual_seed(0)
    mha = mt.MultiHeadAttention(16, 4, pos=pos).eval()
    x = torch.randn(1, 9, 16)
    with torch.no_grad():
        shifted = mha(x, is_causal=True, positions=torch.arange(9) + 100)
        torch.testing.assert_close(shifted, mha(x, is_causal=True), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(mha(x, is_causal=True, positions=torch.arange(9).flip(0)), shifted, atol=1e-3)


def test_attention_hook_errors_and_defaults():
    assert mt.MultiHeadAttention(16, 4).pos is None and mt.MultiHeadAttention(16, 4).backend == "sdpa"
    with pytest.raises(ValueError, match="pos must be one of"):
        mt.MultiHeadAttention(16, 4, pos="learned")
    with pytest.raises(ValueError, match="backend must be one of"):
        mt.MultiHeadAttention(16, 4, backend="flash-attn")
    with pytest.raises(ValueError, match="must be even"):
        mt.MultiHeadAttention(12, 4, pos="rope")
    with pytest.raises(ValueError, match=r"positions must have shape \(T,\)"):
        mt.MultiHeadAttention(16, 4, pos="rope")(torch.zeros(1, 5, 16), positions=torch.arange(4))
    with pytest.raises(ValueError, match="mlp must be one of"):
        mt.Block(16, 4, mlp="tanh")


# --- weight tying and initialisation ---------------------------------------------------------------


def test_tied_weights_share_storage_and_stay_tied_through_training():
    model = mt.GPT(config())
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    untied = mt.GPT(config(tie_weights=False))
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    assert untied.num_parameters() - model.num_parameters() == V * 16  # one V x C matrix saved
    opt = model.configure_optimizer(weight_decay=0.1, lr=1e-2)
    idx = torch.randint(0, V, (2, 12))
    _, loss = model(idx, idx)
    loss.backward()
    opt.step()
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    sd = model.state_dict()  # both names are saved, holding the same tensor
    assert sd["lm_head.weight"].data_ptr() == sd["tok_emb.weight"].data_ptr()


def test_gpt2_initialisation_statistics():
    torch.manual_seed(0)
    c = mt.GPTConfig(vocab_size=500, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = mt.GPT(c)
    residual_std = 0.02 / math.sqrt(2 * c.n_layer)
    for name, p in model.named_parameters():
        if name.endswith("o_proj.weight") or name.endswith("fc_out.weight"):
            assert abs(p.std().item() - residual_std) < 0.1 * residual_std, name
        elif p.dim() == 2:
            assert abs(p.std().item() - 0.02) < 0.002, name
            assert abs(p.mean().item()) < 0.002, name
        elif name.endswith("bias"):
            assert torch.all(p == 0), name
        else:  # norm gains
            assert torch.all(p == 1), name


def test_residual_scaling_keeps_the_stream_variance_flat_in_depth():
    # With W_O and the MLP's output scaled by 1/sqrt(2L), the variance the blocks add to the stream does not
    # grow with L; without it, it grows about linearly. Measured at init on random tokens.
    def added_variance(n_layer, scaled):
        torch.manual_seed(0)
        model = mt.GPT(mt.GPTConfig(vocab_size=V, block_size=32, n_layer=n_layer, n_head=4, n_embd=64))
        if not scaled:
            with torch.no_grad():
                for block in model.blocks:
                    for proj in mt.gpt.residual_projections(block):
                        proj.weight.normal_(0.0, 0.02)
        idx = torch.randint(0, V, (8, 32), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            x0 = model.embed(idx)
            x = x0
            for block in model.blocks:
                x = block(x)
        return (x - x0).var().item()

    scaled = [added_variance(n, True) for n in (2, 16)]
    unscaled = [added_variance(n, False) for n in (2, 16)]
    assert scaled[1] / scaled[0] < 2.0
    assert unscaled[1] / unscaled[0] > 4.0


@pytest.mark.parametrize("vocab", [65, 500])
def test_loss_at_initialisation_is_close_to_log_vocab_size(vocab):
    torch.manual_seed(0)
    model = mt.GPT(mt.GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=4, n_embd=64))
    g = torch.Generator().manual_seed(1)
    idx, targets = torch.randint(0, vocab, (16, 32), generator=g), torch.randint(0, vocab, (16, 32), generator=g)
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(vocab)) < 0.05


def test_loss_is_mean_cross_entropy_and_ignores_minus_100():
    torch.manual_seed(0)
    model = randomise(mt.GPT(config()), seed=8)
    g = torch.Generator().manual_seed(9)
    idx, targets = torch.randint(0, V, (3, 12), generator=g), torch.randint(0, V, (3, 12), generator=g)
    targets[0, :5] = -100
    targets[2, 7] = -100
    logits, loss = model(idx, targets)
    keep = targets != -100
    logp = torch.log_softmax(logits.double(), dim=-1)
    expected = -logp[keep].gather(-1, targets[keep][:, None]).mean()
    torch.testing.assert_close(loss.double(), expected, atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = mt.GPT(config(dropout=0.3))
    idx = torch.randint(0, V, (2, 12))
    model.train()
    assert not torch.allclose(model(idx)[0], model(idx)[0])
    model.eval()
    torch.testing.assert_close(model(idx)[0], model(idx)[0], rtol=0, atol=0)


# --- optimizer -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "llama", "sinusoidal_untied"])
def test_optimizer_decays_exactly_the_matrices(name):
    model = mt.GPT(config(**VARIANTS[name]))
    opt = model.configure_optimizer(weight_decay=0.1, lr=3e-4, betas=(0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW)
    by_id = {id(p): n for n, p in model.named_parameters()}
    decayed = {by_id[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    not_decayed = {by_id[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    expected_decayed = {n for n, p in model.named_parameters() if p.dim() >= 2}
    assert decayed == expected_decayed and "tok_emb.weight" in decayed
    assert not_decayed == {n for n, p in model.named_parameters() if p.dim() < 2}
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.num_parameters()
    assert all(g["lr"] == 3e-4 and g["betas"] == (0.9, 0.95) for g in opt.param_groups)


# --- generation ------------------------------------------------------------------------------------


def greedy_reference(model, idx, n):
    """Arg-max decoding written out: feed the last block_size tokens, append the arg max, repeat."""
    for _ in range(n):
        logits, _ = model(idx[:, -model.config.block_size :])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_greedy_generation_matches_an_argmax_loop_and_tiny_temperature(name):
    torch.manual_seed(0)
    model = randomise(mt.GPT(config(**VARIANTS[name])), seed=10).eval()
    prompt = torch.randint(0, V, (2, 4), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        expected = greedy_reference(model, prompt, 15)  # runs past block_size=12: the window slides
    assert torch.equal(model.generate(prompt, 15, temperature=0), expected)
    cold = model.generate(prompt, 15, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cold, expected)


def test_generation_restores_training_mode_and_is_reproducible_with_a_generator():
    model = mt.GPT(config(dropout=0.1))
    model.train()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(prompt, 20, top_k=10, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 20, top_k=10, generator=torch.Generator().manual_seed(3))
    assert model.training and torch.equal(a, b) and a.shape == (1, 21)


def expected_with_stops(free, prompt_len, stops):
    """What generation with stop tokens must return, given the free-running greedy output (B, T + n)."""
    rows, ends = [], []
    for row in free.tolist():
        new = row[prompt_len:]
        hit = next((i for i, tok in enumerate(new) if tok in stops), None)
        rows.append(row if hit is None else row[: prompt_len + hit + 1] + [new[hit]] * (len(new) - hit - 1))
        ends.append(len(row) if hit is None else prompt_len + hit + 1)
    return torch.tensor(rows)[:, : max(ends)]  # generation ends once every row has stopped


@pytest.mark.parametrize("stops", [[26], [26, 29], 35, [99]])
def test_stop_tokens_end_generation_and_pad_finished_rows(stops):
    torch.manual_seed(0)
    model = randomise(mt.GPT(config()), seed=15).eval()
    prompt = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        free = greedy_reference(model, prompt, 12)
    # seed 15 gives the rows [7, 26, 35, 35, 7, ...] and [0, 8, 29, 35, 11, ...]: stops at different steps
    assert free[:, 3:8].tolist() == [[7, 26, 35, 35, 7], [0, 8, 29, 35, 11]]
    out = model.generate(prompt, 12, temperature=0, stop_tokens=stops)
    expected = expected_with_stops(free, 3, [stops] if isinstance(stops, int) else stops)
    assert torch.equal(out, expected)
    single = model.generate(prompt[1:], 12, temperature=0, stop_tokens=stops)
    assert torch.equal(single, expected_with_stops(free[1:], 3, [stops] if isinstance(stops, int) else stops))


# --- errors ----------------------------------------------------------------------------------------


def test_clear_errors_on_bad_configs():
    with pytest.raises(ValueError, match="n_head must divide n_embd"):
        config(n_head=3)
    with pytest.raises(ValueError, match="n_kv_head must divide n_head"):
        config(n_kv_head=3)
    with pytest.raises(ValueError, match="norm must be one of"):
        config(norm="batch")
    with pytest.raises(ValueError, match="mlp must be one of"):
        config(mlp="relu6")
    with pytest.raises(ValueError, match="pos must be one of"):
        config(pos="nope")  # ("none", no positions, is a valid choice: tests/test_gpt_nope.py)
    with pytest.raises(ValueError, match="attn_backend must be one of"):
        config(attn_backend="cuda")
    with pytest.raises(ValueError, match="dropout"):
        config(dropout=1.0)
    with pytest.raises(ValueError, match="must be even"):
        config(pos="rope", n_embd=12, n_head=4)
    with pytest.raises(ValueError, match="n_layer must be a positive int"):
        config(n_layer=0)


def test_from_dict_rejects_unknown_fields_and_lists_the_valid_ones():
    d = config().to_dict()
    assert mt.GPTConfig.from_dict(d) == config()
    with pytest.raises(ValueError, match=r"unknown GPTConfig field\(s\) \['n_heads'\].*valid fields are: vocab_size"):
        mt.GPTConfig.from_dict({**d, "n_heads": 4})
    assert isinstance(mt.GPT(d), mt.GPT)  # a plain dict works too


def test_too_long_sequence_with_learned_positions_is_a_clear_error():
    model = mt.GPT(config())
    with pytest.raises(ValueError, match="sequence length 13 exceeds block_size=12"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(torch.zeros(13, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="targets must have the shape"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
