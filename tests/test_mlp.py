"""mt.gelu, mt.MLP and mt.SwiGLU against torch.nn.functional, hand-built nn.Sequential and closed forms."""

import math
import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mastering_transformers as mt


def random_input(seed, d_model, dtype=torch.float32):
    rng = random.Random(seed)
    lead = tuple(rng.randint(1, 4) for _ in range(rng.randint(1, 2)))  # (T,) or (B, T)
    return torch.randn(*lead, d_model, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate):
    x = torch.cat([torch.linspace(-8, 8, 1001), torch.randn(500, generator=torch.Generator().manual_seed(0)) * 3])
    torch.testing.assert_close(mt.gelu(x, approximate), F.gelu(x, approximate=approximate), atol=1e-6, rtol=1e-5)
    x64 = x.double()
    torch.testing.assert_close(mt.gelu(x64, approximate), F.gelu(x64, approximate=approximate), atol=1e-12, rtol=1e-10)


def test_gelu_closed_form_values():
    # GELU(x) = x Phi(x): Phi(0) = 1/2, Phi(1) = (1 + erf(1/sqrt 2)) / 2; large |x| -> relu(x)
    x = torch.tensor([0.0, 1.0, -1.0, 10.0, -10.0], dtype=torch.float64)
    phi1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    expected = torch.tensor([0.0, phi1, -(1 - phi1), 10.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(mt.gelu(x), expected, atol=1e-12, rtol=0)


def test_gelu_tanh_is_close_to_exact_but_not_equal():
    x = torch.linspace(-5, 5, 2001, dtype=torch.float64)
    diff = (mt.gelu(x, "tanh") - mt.gelu(x)).abs().max().item()
    assert 0 < diff < 1e-3


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        mt.gelu(torch.zeros(3), approximate="sigmoid")


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("seed", range(4))
def test_mlp_matches_sequential_with_copied_weights(activation, seed):
    rng = random.Random(seed)
    d_model, d_ff = rng.randint(1, 12), rng.randint(1, 40)
    torch.manual_seed(seed)
    mlp = mt.MLP(d_model, d_ff, activation=activation)
    act = {"relu": nn.ReLU(), "gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh")}[activation]
    ref = nn.Sequential(nn.Linear(d_model, d_ff), act, nn.Linear(d_ff, d_model))
    with torch.no_grad():
        ref[0].weight.copy_(mlp.fc_in.weight)
        ref[0].bias.copy_(mlp.fc_in.bias)
        ref[2].weight.copy_(mlp.fc_out.weight)
        ref[2].bias.copy_(mlp.fc_out.bias)
    x = random_input(seed, d_model)
    out = mlp(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=1e-5)


def test_mlp_default_d_ff_and_no_bias():
    mlp = mt.MLP(6, bias=False)
    assert mlp.d_ff == 24 and mlp.fc_in.out_features == 24
    assert mlp.fc_in.bias is None and mlp.fc_out.bias is None


@pytest.mark.parametrize("d_model,d_ff,bias", [(1, 1, True), (7, 13, True), (16, None, True), (16, None, False), (5, 3, False)])
def test_mlp_parameter_count_closed_form(d_model, d_ff, bias):
    mlp = mt.MLP(d_model, d_ff, bias=bias)
    h = 4 * d_model if d_ff is None else d_ff
    expected = 2 * d_model * h + (h + d_model if bias else 0)
    assert sum(p.numel() for p in mlp.parameters()) == expected


@pytest.mark.parametrize("seed", range(6))
def test_swiglu_matches_formula(seed):
    rng = random.Random(seed)
    d_model, d_ff, bias = rng.randint(1, 12), rng.randint(1, 40), seed % 2 == 1
    torch.manual_seed(seed)
    ffn = mt.SwiGLU(d_model, d_ff, bias=bias)
    x = random_input(100 + seed, d_model)
    wg, wu, wd = ffn.w_gate.weight, ffn.w_up.weight, ffn.w_down.weight
    if bias:
        gate, up = x @ wg.T + ffn.w_gate.bias, x @ wu.T + ffn.w_up.bias
        expected = (F.silu(gate) * up) @ wd.T + ffn.w_down.bias
    else:
        # silu(z) = z * sigmoid(z), written out independently of F.silu as well
        gate, up = x @ wg.T, x @ wu.T
        expected = (gate * torch.sigmoid(gate) * up) @ wd.T
        torch.testing.assert_close(F.silu(gate) * up @ wd.T, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ffn(x), expected, atol=1e-5, rtol=1e-5)


def test_swiglu_gate_is_on_w_gate_not_w_up():
    # swapping the two branches changes the output: silu must act on x W_gate
    torch.manual_seed(0)
    ffn = mt.SwiGLU(5, 11)
    x = torch.randn(3, 5)
    swapped = ffn.w_down(F.silu(ffn.w_up(x)) * ffn.w_gate(x))
    assert not torch.allclose(ffn(x), swapped, atol=1e-4)


@pytest.mark.parametrize("d_model", [1, 2, 3, 4, 5, 8, 64, 96, 100, 384, 768])
def test_swiglu_default_hidden_size(d_model):
    d_ff = mt.swiglu_hidden_size(d_model)
    assert d_ff % 8 == 0
    assert d_ff >= 8 * d_model / 3 > d_ff - 8  # smallest multiple of 8 not below 8 C / 3
    assert mt.SwiGLU(d_model).d_ff == d_ff
    if d_model % 3 == 0:
        assert d_ff == 8 * d_model // 3  # exact parameter match


@pytest.mark.parametrize("d_model", [3, 48, 96, 384])
def test_swiglu_matches_mlp_parameter_count_when_divisible_by_3(d_model):
    n_swiglu = sum(p.numel() for p in mt.SwiGLU(d_model).parameters())
    n_mlp = sum(p.numel() for p in mt.MLP(d_model, bias=False).parameters())
    assert n_swiglu == 3 * d_model * (8 * d_model // 3) == 8 * d_model**2 == n_mlp


@pytest.mark.parametrize("d_model,d_ff,bias", [(4, 10, False), (4, 10, True), (64, None, False)])
def test_swiglu_parameter_count_closed_form(d_model, d_ff, bias):
    h = mt.swiglu_hidden_size(d_model) if d_ff is None else d_ff
    expected = 3 * d_model * h + (2 * h + d_model if bias else 0)
    assert sum(p.numel() for p in mt.SwiGLU(d_model, d_ff, bias=bias).parameters()) == expected


@pytest.mark.parametrize("make", [lambda: mt.MLP(6, 17, "gelu"), lambda: mt.MLP(6, activation="relu"), lambda: mt.SwiGLU(6)])
def test_position_wise(make):
    torch.manual_seed(0)
    ffn = make()
    x = torch.randn(3, 7, 6)
    whole = ffn(x)
    per_token = torch.stack([torch.stack([ffn(x[b, t]) for t in range(7)]) for b in range(3)])
    torch.testing.assert_close(whole, per_token, atol=1e-6, rtol=1e-5)
    # and permuting the positions permutes the outputs the same way
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ffn(x[:, perm]), whole[:, perm], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: mt.MLP(4, 9, "gelu"), lambda: mt.MLP(4, 9, "gelu_tanh"), lambda: mt.SwiGLU(4, 6)])
def test_gradcheck_float64(make):
    torch.manual_seed(0)
    ffn = make().double()
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ffn, (x,))
    for approximate in ("none", "tanh"):
        assert torch.autograd.gradcheck(lambda t: mt.gelu(t, approximate), (x,))


def test_dropout_only_in_training():
    torch.manual_seed(0)
    ffn = mt.MLP(8, dropout=0.5)
    x = torch.randn(4, 5, 8)
    ffn.eval()
    torch.testing.assert_close(ffn(x), ffn(x))
    ffn.train()
    assert (ffn(x) == 0).any()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: mt.MLP(8, activation="tanh"), "activation"),
        (lambda: mt.MLP(0), "positive"),
        (lambda: mt.MLP(8, d_ff=-1), "positive"),
        (lambda: mt.MLP(8, dropout=1.0), "dropout"),
        (lambda: mt.SwiGLU(0), "positive"),
        (lambda: mt.SwiGLU(8, d_ff=0), "positive"),
        (lambda: mt.SwiGLU(8, dropout=-0.1), "dropout"),
        (lambda: mt.swiglu_hidden_size(-3), "positive"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("ffn", [mt.MLP(8), mt.SwiGLU(8)])
def test_wrong_feature_size_raises(ffn):
    with pytest.raises(ValueError, match="d_model=8"):
        ffn(torch.zeros(2, 3, 7))
