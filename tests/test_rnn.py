"""mt.RNNCell, mt.LSTMCell, mt.RNN, mt.LSTM, mt.AdditiveAttention and mt.Seq2Seq against torch and closed forms."""

import random

import pytest
import torch

import mastering_transformers as mt


def random_sizes(seed):
    rng = random.Random(seed)
    return rng.randint(1, 4), rng.randint(1, 9), rng.randint(1, 7), rng.randint(1, 12)  # B, T, C, H


def copy_layer0(ours, theirs):
    """Copy torch.nn.RNN / nn.LSTM layer-0 weights into one of our cells."""
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ours, name).copy_(getattr(theirs, f"{name}_l0"))


@pytest.mark.parametrize("seed", range(10))
def test_rnn_matches_torch(seed):
    torch.manual_seed(seed)
    b, t, c, h = random_sizes(seed)
    ref = torch.nn.RNN(c, h, batch_first=True)
    ours = mt.RNN(c, h)
    copy_layer0(ours.cell, ref)
    x, h0 = torch.randn(b, t, c), torch.randn(b, h)
    out, h_t = ours(x, h0)
    ref_out, ref_h = ref(x, h0[None])
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_t, ref_h[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.cell(x[:, 0], h0), ref_out[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(10))
def test_lstm_matches_torch(seed):
    torch.manual_seed(seed)
    b, t, c, h = random_sizes(seed)
    ref = torch.nn.LSTM(c, h, batch_first=True)
    ours = mt.LSTM(c, h)
    copy_layer0(ours.cell, ref)
    x, h0, c0 = torch.randn(b, t, c), torch.randn(b, h), torch.randn(b, h)
    out, (h_t, c_t) = ours(x, (h0, c0))
    ref_out, (ref_h, ref_c) = ref(x, (h0[None], c0[None]))
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_t, ref_h[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c_t, ref_c[0], atol=1e-5, rtol=1e-5)


def test_default_state_is_zero():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3)
    rnn, lstm = mt.RNN(3, 4), mt.LSTM(3, 4)
    torch.testing.assert_close(rnn(x)[0], rnn(x, torch.zeros(2, 4))[0])
    zeros = torch.zeros(2, 4)
    torch.testing.assert_close(lstm(x)[0], lstm(x, (zeros, zeros))[0])


@pytest.mark.parametrize("seed", range(3))
def test_cell_gradients(seed):
    torch.manual_seed(seed)
    b, _, c, h = random_sizes(seed)
    rnn_cell = mt.RNNCell(c, h).double()
    lstm_cell = mt.LSTMCell(c, h).double()
    x = torch.randn(b, c, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(b, h, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(b, h, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h0, *p: rnn_cell(x, h0), (x, h0, *rnn_cell.parameters()))
    assert torch.autograd.gradcheck(
        lambda x, h0, c0, *p: torch.cat(lstm_cell(x, (h0, c0)), -1), (x, h0, c0, *lstm_cell.parameters())
    )


@pytest.mark.parametrize("seed", range(10))
def test_additive_attention_closed_form(seed):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    b, t, d_q, d_k, d_a = (rng.randint(1, 6) for _ in range(5))
    attn = mt.AdditiveAttention(d_q, d_k, d_a)
    s, h = torch.randn(b, d_q), torch.randn(b, t, d_k)
    context, weights = attn(s, h)
    W_s, W_h, v = attn.W_s.weight, attn.W_h.weight, attn.v.weight[0]  # (A, D_q), (A, D_k), (A,)
    scores = torch.empty(b, t)
    for i in range(b):
        for j in range(t):
            scores[i, j] = v @ torch.tanh(W_s @ s[i] + W_h @ h[i, j])
    expected = scores.exp() / scores.exp().sum(-1, keepdim=True)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(b))
    torch.testing.assert_close(context, torch.einsum("bt,btd->bd", expected, h), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(attn(s, h, h_proj=attn.W_h(h))[1], weights)


def test_additive_attention_mask():
    torch.manual_seed(0)
    attn = mt.AdditiveAttention(3, 4, 5)
    s, h = torch.randn(2, 3), torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    _, weights = attn(s, h, mask)
    assert (weights[1, 3:] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    _, short = attn(s[1:], h[1:, :3])
    torch.testing.assert_close(weights[1, :3], short[0])


def test_seq2seq_shapes_and_generate():
    torch.manual_seed(0)
    for attention in (False, True):
        model = mt.Seq2Seq(11, 8, 16, attention=attention)
        src, tgt_in = torch.randint(0, 10, (3, 7)), torch.randint(0, 11, (3, 5))
        logits, weights = model(src, tgt_in)
        assert logits.shape == (3, 5, 11)
        tokens, gen_w = model.generate(src, 5, bos=10)
        assert tokens.shape == (3, 5)
        if attention:
            assert weights.shape == (3, 5, 7) and gen_w.shape == (3, 5, 7)
            torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
        else:
            assert weights is None and gen_w is None
        # greedy generation is teacher forcing on its own outputs
        fed = torch.cat([torch.full((3, 1), 10), tokens[:, :-1]], dim=1)
        assert torch.equal(model(src, fed)[0].argmax(-1), tokens)


def test_clear_errors():
    rnn, lstm = mt.RNN(3, 4), mt.LSTM(3, 4)
    with pytest.raises(ValueError, match=r"\(B, T, input_size=3\)"):
        rnn(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"input_size=3"):
        lstm(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"state must be \(B=2, hidden_size=4\)"):
        rnn.cell(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match="same shape"):
        lstm.cell(torch.randn(2, 3), (torch.randn(2, 4), torch.randn(1, 4)))
    attn = mt.AdditiveAttention(3, 4, 5)
    with pytest.raises(ValueError, match="query must be"):
        attn(torch.randn(2, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="keys must be"):
        attn(torch.randn(2, 3), torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match="mask must be"):
        attn(torch.randn(2, 3), torch.randn(2, 6, 4), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="positive"):
        mt.RNNCell(0, 4)
