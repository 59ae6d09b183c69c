"""mt.Block against torch.nn.TransformerEncoderLayer (norm_first=True/False, GELU, batch_first, no dropout) with
copied weights, with a causal mask, a padding mask and none; an RMSNorm block against a composition of
torch.nn.MultiheadAttention and torch.nn.RMSNorm; the residual structure itself; and errors.
"""

import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mastering_transformers as mt


def randomise(module, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return module


def copy_into_torch_layer(block: mt.Block, layer: nn.TransformerEncoderLayer) -> None:
    """Our Block's weights into torch's layer (its attention packs W_Q, W_K, W_V into one in_proj)."""
    a, m = block.attn, block.mlp
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        layer.self_attn.out_proj.weight.copy_(a.o_proj.weight)
        layer.self_attn.out_proj.bias.copy_(a.o_proj.bias)
        layer.linear1.weight.copy_(m.fc_in.weight)
        layer.linear1.bias.copy_(m.fc_in.bias)
        layer.linear2.weight.copy_(m.fc_out.weight)
        layer.linear2.bias.copy_(m.fc_out.bias)
        for ours, theirs in [(block.norm_1, layer.norm1), (block.norm_2, layer.norm2)]:
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)


def pair(seed, norm_first):
    rng = random.Random(seed)
    n_head = rng.choice([1, 2, 4])
    d_model = n_head * rng.choice([4, 8])
    d_ff = rng.choice([None, 3 * d_model])
    block = randomise(mt.Block(d_model, n_head, d_ff=d_ff, norm_first=norm_first), seed)
    with torch.no_grad():  # LayerNorm weights around 1, as after training, so the norms matter
        for norm in (block.norm_1, block.norm_2):
            norm.weight.add_(1.0)
    layer = nn.TransformerEncoderLayer(d_model, n_head, dim_feedforward=d_ff or 4 * d_model, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=norm_first)
    copy_into_torch_layer(block, layer)
    b, t = rng.randint(1, 3), rng.randint(1, 9)
    x = torch.randn(b, t, d_model, generator=torch.Generator().manual_seed(seed))
    return block, layer, x


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_ln", "post_ln"])
@pytest.mark.parametrize("seed", range(8))
def test_causal_block_matches_torch_encoder_layer(seed, norm_first):
    block, layer, x = pair(seed, norm_first)
    t = x.shape[1]
    causal = nn.Transformer.generate_square_subsequent_mask(t)  # float: -inf above the diagonal
    for mode in ("train", "eval"):  # eval may take torch's fused fast path
        block.train(mode == "train")
        layer.train(mode == "train")
        expected = layer(x, src_mask=causal, is_causal=True)
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(block(x, is_causal=True), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_ln", "post_ln"])
@pytest.mark.parametrize("seed", range(4))
def test_bidirectional_block_matches_torch_encoder_layer(seed, norm_first):
    block, layer, x = pair(100 + seed, norm_first)
    torch.testing.assert_close(block(x, is_causal=False), layer(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_ln", "post_ln"])
def test_padding_mask_on_top_of_the_causal_mask_matches_torch(norm_first):
    block, layer, _ = pair(7, norm_first)
    d_model = block.norm_1.d_model
    x = torch.randn(3, 6, d_model, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([6, 4, 2])
    keep = mt.padding_mask(lengths, 6)  # (B, 1, 1, T), True on real tokens
    pad = torch.arange(6)[None, :] >= lengths[:, None]  # torch's convention: True = ignore
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    expected = layer(x, src_mask=causal, src_key_padding_mask=pad.float().masked_fill(pad, float("-inf")))
    torch.testing.assert_close(block(x, mask=keep), expected, atol=1e-5, rtol=1e-4)
    additive = torch.zeros(3, 1, 1, 6).masked_fill(~keep, float("-inf"))  # the same mask, additive
    torch.testing.assert_close(block(x, mask=additive), expected, atol=1e-5, rtol=1e-4)
    # without the causal part, the padding mask alone
    expected_bi = layer(x, src_key_padding_mask=pad)
    torch.testing.assert_close(block(x, mask=keep, is_causal=False), expected_bi, atol=1e-5, rtol=1e-4)


def rms_reference(block: mt.Block, x: torch.Tensor) -> torch.Tensor:
    """The same Pre-LN RMSNorm block built from torch parts: nn.RMSNorm, nn.MultiheadAttention, F.linear, F.gelu."""
    c, h = block.norm_1.d_model, block.attn.n_head
    norms = [nn.RMSNorm(c, eps=1e-6) for _ in range(2)]
    mha = nn.MultiheadAttention(c, h, batch_first=True)
    a, m = block.attn, block.mlp
    with torch.no_grad():
        norms[0].weight.copy_(block.norm_1.weight)
        norms[1].weight.copy_(block.norm_2.weight)
        mha.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        mha.out_proj.weight.copy_(a.o_proj.weight)
        mha.out_proj.bias.copy_(a.o_proj.bias)
    t = x.shape[1]
    future = torch.ones(t, t, dtype=torch.bool).triu(1)  # torch's convention: True = forbidden
    h1 = norms[0](x)
    x = x + mha(h1, h1, h1, attn_mask=future, need_weights=False)[0]
    h2 = norms[1](x)
    return x + F.linear(F.gelu(F.linear(h2, m.fc_in.weight, m.fc_in.bias)), m.fc_out.weight, m.fc_out.bias)


@pytest.mark.parametrize("seed", range(4))
def test_rms_block_matches_torch_composition(seed):
    block = randomise(mt.Block(16, 4, norm="rms"), seed)
    assert isinstance(block.norm_1, mt.RMSNorm) and isinstance(block.norm_2, mt.RMSNorm)
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(block(x), rms_reference(block, x), atol=1e-5, rtol=1e-4)


def zero_sublayer_outputs(block):
    with torch.no_grad():
        for linear in (block.attn.o_proj, block.mlp.fc_out):
            linear.weight.zero_()
            linear.bias.zero_()
    return block


def test_pre_ln_is_the_identity_when_its_sublayers_output_zero():
    """The residual path of a Pre-LN block carries x through untouched."""
    block = zero_sublayer_outputs(randomise(mt.Block(8, 2, norm_first=True), 0))
    x = 5 * torch.randn(2, 5, 8) + 3
    assert torch.equal(block(x), x)


def test_post_ln_normalises_even_when_its_sublayers_output_zero():
    """Post-LN puts the norms on the residual path: with zero sublayers the block is norm_2(norm_1(x))."""
    block = zero_sublayer_outputs(randomise(mt.Block(8, 2, norm_first=False), 0))
    x = 5 * torch.randn(2, 5, 8) + 3
    ln1, ln2 = nn.LayerNorm(8), nn.LayerNorm(8)
    with torch.no_grad():
        for ours, theirs in [(block.norm_1, ln1), (block.norm_2, ln2)]:
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
    torch.testing.assert_close(block(x), ln2(ln1(x)))


def test_causal_block_does_not_look_ahead():
    g = torch.Generator().manual_seed(0)
    for norm_first in (True, False):
        block = mt.Block(16, 4, norm_first=norm_first)
        x = torch.randn(2, 8, 16, generator=g)
        x2 = x.clone()
        x2[:, 5:] = torch.randn(2, 3, 16, generator=g)
        torch.testing.assert_close(block(x)[:, :5], block(x2)[:, :5])
        assert not torch.allclose(block(x, is_causal=False)[:, :5], block(x2, is_causal=False)[:, :5])


def test_grouped_query_block_equals_a_full_block_with_repeated_kv_weights():
    gqa = randomise(mt.Block(16, 4, n_kv_head=2), 3)
    full = mt.Block(16, 4)
    full.load_state_dict(
        {k: v for k, v in gqa.state_dict().items() if not k.startswith(("attn.k_proj", "attn.v_proj"))}, strict=False
    )
    with torch.no_grad():
        for name in ("k_proj", "v_proj"):
            small, big = getattr(gqa.attn, name), getattr(full.attn, name)
            d = 16 // 4  # each of the 2 kv heads serves 2 consecutive query heads
            big.weight.copy_(small.weight.view(2, d, 16).repeat_interleave(2, dim=0).reshape(16, 16))
            big.bias.copy_(small.bias.view(2, d).repeat_interleave(2, dim=0).reshape(16))
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(gqa(x), full(x), atol=1e-5, rtol=1e-4)


def test_options_are_passed_on():
    block = mt.Block(12, 3, d_ff=20, bias=False, dropout=0.1, norm="layer")
    assert block.mlp.d_ff == 20 and block.mlp.fc_in.bias is None and block.attn.q_proj.bias is None
    assert block.norm_1.bias is None and block.attn.dropout == 0.1 and block.attn_dropout.p == 0.1
    assert mt.Block(12, 3).mlp.d_ff == 48  # 4 C by default
    assert sum(p.numel() for p in mt.Block(12, 3).parameters()) == 4 * (12 * 12 + 12) + 2 * 12 * 48 + 48 + 12 + 4 * 12


def test_dropout_is_active_in_training_only():
    block = mt.Block(16, 4, dropout=0.5)
    x = torch.randn(2, 5, 16)
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    block.train()
    assert not torch.allclose(block(x), block(x))


def test_gradients_reach_every_parameter():
    for norm_first in (True, False):
        block = mt.Block(8, 2, norm_first=norm_first)
        block(torch.randn(2, 4, 8)).pow(2).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_errors():
    with pytest.raises(ValueError, match="norm must be one of"):
        mt.Block(8, 2, norm="batch")
    with pytest.raises(ValueError, match="n_head must divide d_model"):
        mt.Block(10, 3)
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        mt.Block(8, 2)(torch.randn(4, 8))
    with pytest.raises(ValueError, match="d_model=8"):
        mt.Block(8, 2)(torch.randn(2, 4, 6))
