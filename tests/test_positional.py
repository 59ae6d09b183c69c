"""mt's positional schemes against closed forms computed independently (math loops, complex numbers),
and the properties chapter 7 relies on: relative offsets, norm preservation, the ALiBi paper's slopes."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt

# ----------------------------------------------------------------------------------------------
# Sinusoidal encoding
# ----------------------------------------------------------------------------------------------


def sinusoidal_reference(n_positions, d_model, base=10000.0):
    """Vaswani et al.'s formula, one entry at a time, in Python floats."""
    pe = np.zeros((n_positions, d_model))
    for p in range(n_positions):
        for c in range(d_model):
            i = c // 2  # columns 2i and 2i+1 share the frequency base^(-2i/d)
            angle = p / base ** (2 * i / d_model)
            pe[p, c] = math.sin(angle) if c % 2 == 0 else math.cos(angle)
    return torch.from_numpy(pe)


@pytest.mark.parametrize("seed", range(8))
def test_sinusoidal_matches_closed_form(seed):
    rng = random.Random(seed)
    t, d = rng.randint(1, 40), rng.randint(1, 33)  # odd d_model included
    base = rng.choice([10000.0, 100.0, 500000.0])
    pe = mt.sinusoidal_encoding(t, d, base=base, dtype=torch.float64)
    assert pe.shape == (t, d) and pe.dtype == torch.float64
    torch.testing.assert_close(pe, sinusoidal_reference(t, d, base), atol=1e-12, rtol=0)


def test_sinusoidal_dtype_device_and_large_positions():
    pe = mt.sinusoidal_encoding(10001, 8)
    assert pe.dtype == torch.get_default_dtype() and pe.device.type == "cpu"
    # the angles are computed in float64: position 10000 is still accurate to float32 rounding
    reference = sinusoidal_reference(1, 8)  # just the shape of one row
    for c in range(8):
        angle = 10000 / 10000.0 ** (2 * (c // 2) / 8)
        reference[0, c] = math.sin(angle) if c % 2 == 0 else math.cos(angle)
    torch.testing.assert_close(pe[10000].double(), reference[0], atol=1e-6, rtol=0)
    assert mt.sinusoidal_encoding(0, 4).shape == (0, 4)


def test_sinusoidal_offset_is_a_rotation_that_depends_only_on_the_offset():
    t, d = 50, 16
    pe = mt.sinusoidal_encoding(t, d, dtype=torch.float64)
    for k in (1, 3, 17):
        m = torch.zeros(d, d, dtype=torch.float64)  # block-diagonal, one 2x2 block per frequency
        for i in range(d // 2):
            a = k / 10000.0 ** (2 * i / d)
            m[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor([[math.cos(a), math.sin(a)],
                                                                   [-math.sin(a), math.cos(a)]],
                                                                  dtype=torch.float64)
        torch.testing.assert_close(pe[k:], pe[:-k] @ m.T, atol=1e-12, rtol=0)
        torch.testing.assert_close(m @ m.T, torch.eye(d, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("args", [(-1, 4), (4, 0), (4, -2)])
def test_sinusoidal_rejects_bad_sizes(args):
    with pytest.raises(ValueError, match="n_positions"):
        mt.sinusoidal_encoding(*args)


def test_sinusoidal_rejects_bad_base():
    with pytest.raises(ValueError, match="base"):
        mt.sinusoidal_encoding(4, 4, base=0.0)


# ----------------------------------------------------------------------------------------------
# Learned absolute positions
# ----------------------------------------------------------------------------------------------


def test_learned_positions_are_rows_0_to_t_minus_1():
    torch.manual_seed(0)
    emb = mt.LearnedPositionalEmbedding(16, 8)
    assert emb.weight.shape == (16, 8) and sum(p.numel() for p in emb.parameters()) == 16 * 8
    assert 0.01 < emb.weight.std().item() < 0.03  # GPT-2's N(0, 0.02^2)
    ids = torch.randint(0, 50, (3, 5))
    for x in (ids, 5, torch.randn(3, 5, 8)):
        torch.testing.assert_close(emb(x), emb.weight[:5], atol=0, rtol=0)
    torch.testing.assert_close(emb(16), emb.weight, atol=0, rtol=0)
    # it behaves like an nn.Embedding looked up at arange(T), and gradients reach only those rows
    ref = torch.nn.Embedding(16, 8)
    ref.weight.data.copy_(emb.weight.data)
    torch.testing.assert_close(emb(ids), ref(torch.arange(5)), atol=0, rtol=0)
    emb(ids).sum().backward()
    assert torch.all(emb.weight.grad[:5] == 1) and torch.all(emb.weight.grad[5:] == 0)


def test_learned_positions_refuse_sequences_longer_than_the_table():
    emb = mt.LearnedPositionalEmbedding(8, 4)
    with pytest.raises(ValueError, match=r"sequence length 9 exceeds max_positions=8"):
        emb(torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        emb(torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="max_positions > 0"):
        mt.LearnedPositionalEmbedding(0, 4)


# ----------------------------------------------------------------------------------------------
# RoPE
# ----------------------------------------------------------------------------------------------


def rope_reference(x, positions, base=10000.0):
    """Rotation as complex multiplication: pair (x[2i], x[2i+1]) -> z_i * exp(j p theta_i), float64."""
    d = x.shape[-1]
    theta = torch.tensor([base ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    turn = torch.polar(torch.ones_like(theta), positions.double()[..., None] * theta)  # exp(j p theta_i)
    return torch.view_as_real(z * turn).reshape(x.shape)


def random_x(seed, dtype=torch.float64):
    rng = random.Random(seed)
    lead = tuple(rng.randint(1, 3) for _ in range(rng.randint(0, 2)))
    t, d = rng.randint(1, 12), 2 * rng.randint(1, 16)
    return torch.randn(*lead, t, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_rope_frequencies_closed_form():
    for d in (2, 8, 64, 128):
        expected = torch.tensor([10000.0 ** (-2 * i / d) for i in range(d // 2)])
        torch.testing.assert_close(mt.rope_frequencies(d), expected)
    torch.testing.assert_close(mt.rope_frequencies(4, base=100.0), torch.tensor([1.0, 0.1]))
    with pytest.raises(ValueError, match="even"):
        mt.rope_frequencies(7)


@pytest.mark.parametrize("seed", range(10))
def test_rope_matches_complex_multiplication(seed):
    x = random_x(seed)
    t = x.shape[-2]
    torch.testing.assert_close(mt.apply_rope(x), rope_reference(x, torch.arange(t)), atol=1e-12, rtol=0)
    offset = torch.arange(t) + 37  # e.g. new tokens after a KV cache of 37
    torch.testing.assert_close(mt.apply_rope(x, offset), rope_reference(x, offset), atol=1e-12, rtol=0)
    frac = torch.linspace(0, 3.5, t)  # fractional positions (position interpolation)
    torch.testing.assert_close(mt.apply_rope(x, frac, base=500.0), rope_reference(x, frac, base=500.0),
                               atol=1e-12, rtol=0)


def test_rope_float32_and_per_batch_positions():
    x = torch.randn(2, 3, 6, 8)
    out = mt.apply_rope(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), rope_reference(x, torch.arange(6)), atol=1e-5, rtol=0)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15]])[:, None, :]  # (B, 1, T)
    out = mt.apply_rope(x, pos)
    torch.testing.assert_close(out[1].double(), rope_reference(x[1], torch.arange(10, 16)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", range(5))
def test_rope_preserves_norms_and_position_zero(seed):
    x = random_x(100 + seed)
    out = mt.apply_rope(x)
    pairs = lambda y: y.reshape(*y.shape[:-1], -1, 2).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(pairs(out), pairs(x), atol=1e-12, rtol=0)  # every pair keeps its length
    torch.testing.assert_close(out[..., 0, :], x[..., 0, :], atol=0, rtol=0)  # position 0: no rotation


@pytest.mark.parametrize("seed", range(5))
def test_rope_scores_depend_only_on_the_offset(seed):
    g = torch.Generator().manual_seed(200 + seed)
    d, t = 16, 20
    q, k = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    q_all = mt.apply_rope(q.expand(t, d))  # the same content at every position 0 .. T-1
    k_all = mt.apply_rope(k.expand(t, d))
    scores = q_all @ k_all.T  # (T, T): scores[m, n] = q'_m . k'_n
    for offset in range(-t + 1, t):
        diag = scores.diagonal(offset)  # all (m, n) with n - m = offset
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-12, rtol=0)
    assert (scores.diagonal(0) - q @ k).abs().max() < 1e-12  # offset 0: the plain dot product


def test_rope_interleaved_vs_rotate_half_differ_by_a_fixed_permutation():
    def rotate_half(y):  # GPT-NeoX / LLaMA convention: feature i is paired with i + D/2
        y1, y2 = y.chunk(2, dim=-1)
        return torch.cat([-y2, y1], dim=-1)

    def rope_half(y, theta):
        ang = torch.arange(y.shape[-2], dtype=torch.float64)[:, None] * theta
        cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
        return y * cos + rotate_half(y) * sin

    d = 12
    x = torch.randn(2, 7, d, dtype=torch.float64)
    perm = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # even features first, then odd
    theta = mt.rope_frequencies(d).double()
    torch.testing.assert_close(rope_half(x[..., perm], theta), mt.apply_rope(x)[..., perm], atol=1e-6, rtol=0)
    assert not torch.allclose(rope_half(x, theta), mt.apply_rope(x), atol=1e-3)  # not interchangeable as is


def test_rope_errors():
    with pytest.raises(ValueError, match="even"):
        mt.apply_rope(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"\(\.\.\., T, D\)"):
        mt.apply_rope(torch.randn(8))
    with pytest.raises(ValueError, match="T=4"):
        mt.apply_rope(torch.randn(4, 6), torch.arange(5))


# ----------------------------------------------------------------------------------------------
# ALiBi
# ----------------------------------------------------------------------------------------------


def alibi_slopes_reference(n):
    """The recursion in the ALiBi authors' code (Press et al.), written out independently."""
    def geometric(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return geometric(n)
    closest = 2 ** math.floor(math.log2(n))
    return geometric(closest) + alibi_slopes_reference(2 * closest)[0::2][: n - closest]


def test_alibi_slopes_for_8_heads_are_the_papers():
    torch.testing.assert_close(mt.alibi_slopes(8), torch.tensor([1 / 2 ** h for h in range(1, 9)]), atol=0, rtol=0)
    torch.testing.assert_close(mt.alibi_slopes(16), torch.tensor([2 ** (-h / 2) for h in range(1, 17)]))
    assert mt.alibi_slopes(1).tolist() == [2.0 ** -8]


def test_alibi_slopes_for_non_powers_of_2():
    # 6 heads: the 4-head slopes, then the 1st and 3rd of the 8-head ones
    expected6 = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]
    torch.testing.assert_close(mt.alibi_slopes(6), torch.tensor(expected6), atol=0, rtol=0)
    # 12 heads: the 8-head slopes, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 from the 16-head sequence
    expected12 = [2.0 ** -h for h in range(1, 9)] + [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5]
    torch.testing.assert_close(mt.alibi_slopes(12), torch.tensor(expected12))
    for n in range(1, 65):
        torch.testing.assert_close(mt.alibi_slopes(n), torch.tensor(alibi_slopes_reference(n), dtype=torch.float32))
        assert len(set(mt.alibi_slopes(n).tolist())) == n  # every head its own slope
    with pytest.raises(ValueError, match="n_head"):
        mt.alibi_slopes(0)


@pytest.mark.parametrize("n_head, t_q, t_k", [(8, 5, None), (3, 4, 7), (12, 1, 9), (4, 0, 0)])
def test_alibi_bias_closed_form(n_head, t_q, t_k):
    bias = mt.alibi_bias(n_head, t_q, t_k)
    t_k = t_q if t_k is None else t_k
    assert bias.shape == (n_head, t_q, t_k)
    slopes = alibi_slopes_reference(n_head)
    for h in range(n_head):
        for i in range(t_q):
            for j in range(t_k):
                assert math.isclose(bias[h, i, j].item(), -slopes[h] * (i - j), rel_tol=1e-6, abs_tol=1e-7)


def test_alibi_with_causal_mask_equals_the_papers_row_shifted_form():
    # The authors add m * j to every row (no -i): each row differs by the constant m * i, which the
    # softmax ignores. Both go through mt.scaled_dot_product_attention as an additive float mask.
    h, t, d = 4, 9, 8
    q, k, v = torch.randn(3, h, t, d), torch.randn(3, h, t, d), torch.randn(3, h, t, d)
    causal = mt.causal_mask(t)
    ours = mt.alibi_bias(h, t).masked_fill(~causal, float("-inf"))
    theirs = (mt.alibi_slopes(h)[:, None, None] * torch.arange(t)).masked_fill(~causal, float("-inf"))
    out1, w1 = mt.scaled_dot_product_attention(q, k, v, mask=ours)
    out2, _ = mt.scaled_dot_product_attention(q, k, v, mask=theirs)
    torch.testing.assert_close(out1, out2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out1, F.scaled_dot_product_attention(q, k, v, attn_mask=ours), atol=1e-5, rtol=1e-5)
    assert torch.all(w1[..., ~causal] == 0)


def test_alibi_bias_errors():
    with pytest.raises(ValueError, match="n_head"):
        mt.alibi_bias(0, 4)
    with pytest.raises(ValueError, match="lengths"):
        mt.alibi_bias(2, -1)
