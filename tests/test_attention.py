"""mt.scaled_dot_product_attention against torch's own implementation and finite differences."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt


def random_qkv(seed, dtype=torch.float32):
    rng = random.Random(seed)
    batch = tuple(rng.randint(1, 3) for _ in range(rng.randint(0, 2)))  # 0, 1 or 2 leading dims
    t_q, t_k, d, d_v = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 16), rng.randint(1, 16)
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, t_q, d, generator=g, dtype=dtype)
    k = torch.randn(*batch, t_k, d, generator=g, dtype=dtype)
    v = torch.randn(*batch, t_k, d_v, generator=g, dtype=dtype)
    return q, k, v


def reference_weights(q, k, mask=None, is_causal=False):
    """Weights recovered from torch's SDPA by attending with the identity as values."""
    t_k = k.shape[-2]
    eye = torch.eye(t_k, dtype=q.dtype).expand(*k.shape[:-2], t_k, t_k)
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=mask, is_causal=is_causal)


@pytest.mark.parametrize("seed", range(20))
def test_matches_torch_without_mask(seed):
    q, k, v = random_qkv(seed)
    out, w = mt.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, reference_weights(q, k), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


@pytest.mark.parametrize("seed", range(10))
def test_causal_matches_torch_including_rectangular(seed):
    q, k, v = random_qkv(100 + seed)
    out, w = mt.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5, rtol=1e-5)
    t_q, t_k = w.shape[-2:]
    future = torch.ones(t_q, t_k, dtype=torch.bool).triu(1)
    assert torch.all(w[..., future] == 0)


@pytest.mark.parametrize("seed", range(10))
def test_boolean_and_additive_masks_match_torch(seed):
    q, k, v = random_qkv(200 + seed)
    t_q, t_k = q.shape[-2], k.shape[-2]
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(t_q, t_k, generator=g) > 0.4
    keep[:, 0] = True  # every query keeps at least one key
    out_b, w_b = mt.scaled_dot_product_attention(q, k, v, mask=keep)
    torch.testing.assert_close(out_b, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), atol=1e-5, rtol=1e-5)
    assert torch.all(w_b[..., ~keep] == 0)
    bias = torch.randn(t_q, t_k, generator=g)  # an additive float mask (like ALiBi) is added to the scores
    out_f, _ = mt.scaled_dot_product_attention(q, k, v, mask=bias)
    torch.testing.assert_close(out_f, F.scaled_dot_product_attention(q, k, v, attn_mask=bias), atol=1e-5, rtol=1e-5)
    additive = torch.zeros(t_q, t_k).masked_fill(~keep, float("-inf"))
    out_a, w_a = mt.scaled_dot_product_attention(q, k, v, mask=additive)
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(w_a, w_b)


def test_padding_mask_ignores_padded_keys():
    g = torch.Generator().manual_seed(0)
    b, h, t, d = 3, 2, 6, 4
    q, k, v = (torch.randn(b, h, t, d, generator=g) for _ in range(3))
    lengths = torch.tensor([6, 4, 1])
    mask = mt.padding_mask(lengths, t)
    assert mask.shape == (b, 1, 1, t)
    out, w = mt.scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-5)
    for i, n in enumerate(lengths.tolist()):
        # padded keys get no weight, and changing what sits in the padding changes nothing
        assert torch.all(w[i, ..., n:] == 0)
        v2 = v.clone()
        v2[i, :, n:] = 1e3
        out2, _ = mt.scaled_dot_product_attention(q, k, v2, mask=mask)
        torch.testing.assert_close(out2[i], out[i])


def test_fully_masked_row_gives_zeros_like_torch():
    q, k, v = (torch.randn(1, 4, 3) for _ in range(3))
    keep = torch.ones(4, 4, dtype=torch.bool)
    keep[2] = False
    out, w = mt.scaled_dot_product_attention(q, k, v, mask=keep)
    assert not torch.isnan(out).any()
    assert torch.all(w[0, 2] == 0) and torch.all(out[0, 2] == 0)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep))


def test_default_scale_is_inverse_sqrt_dk_and_explicit_scale_matches_torch():
    q, k, v = random_qkv(7)
    d = q.shape[-1]
    _, w = mt.scaled_dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)  # the closed form
    torch.testing.assert_close(w, expected)
    out, _ = mt.scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3), atol=1e-5, rtol=1e-5)


def test_dropout_keeps_expectation_and_returns_undropped_weights():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 5, 8, generator=g), torch.randn(1, 7, 8, generator=g)
    v = torch.randn(1, 7, 3, generator=g)
    clean, w_clean = mt.scaled_dot_product_attention(q, k, v)
    torch.manual_seed(0)
    runs = [mt.scaled_dot_product_attention(q, k, v, dropout_p=0.5) for _ in range(4000)]
    assert all(torch.equal(w, w_clean) for _, w in runs[:5])
    assert not torch.equal(runs[0][0], clean)
    mean = torch.stack([o for o, _ in runs]).mean(0)  # inverted dropout is unbiased
    torch.testing.assert_close(mean, clean, atol=0.06, rtol=0)


@pytest.mark.parametrize("masking", ["none", "causal", "bool", "float"])
def test_gradients_match_finite_differences(masking):
    g = torch.Generator().manual_seed(300)
    t_q, t_k = 4, 5
    q, k = (torch.randn(2, 3, t, 6, generator=g, dtype=torch.float64, requires_grad=True) for t in (t_q, t_k))
    v = torch.randn(2, 3, t_k, 2, generator=g, dtype=torch.float64, requires_grad=True)
    kwargs = {}
    if masking == "causal":
        kwargs["is_causal"] = True
    elif masking == "bool":
        kwargs["mask"] = torch.tensor([[True, False, True, True, False]] * t_q)
    elif masking == "float":
        kwargs["mask"] = torch.randn(t_q, t_k, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b, c: mt.scaled_dot_product_attention(a, b, c, **kwargs)[0], (q, k, v))
    # and the analytic gradients equal torch's
    ours = torch.autograd.grad(mt.scaled_dot_product_attention(q, k, v, **kwargs)[0].sum(), (q, k, v))
    torch_kwargs = {"is_causal": True} if masking == "causal" else {"attn_mask": kwargs.get("mask")}
    theirs = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, **torch_kwargs).sum(), (q, k, v))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_causal_mask_helper():
    m = mt.causal_mask(3, 5)
    assert m.dtype == torch.bool and m.shape == (3, 5)
    assert m.tolist() == [[True, False, False, False, False], [True, True, False, False, False],
                          [True, True, True, False, False]]


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((2, 5, 8), (2, 6, 7), (2, 6, 7)), "same feature size d_k"),
        (((2, 5, 8), (2, 6, 8), (2, 4, 8)), "same length T_k"),
        (((2, 5, 8), (3, 6, 8), (3, 6, 8)), "leading"),
        (((8,), (6, 8), (6, 8)), "at least 2 dims"),
    ],
)
def test_clear_errors_on_bad_shapes(shapes, message):
    q, k, v = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=message):
        mt.scaled_dot_product_attention(q, k, v)


def test_clear_errors_on_bad_mask_and_arguments():
    q, k, v = (torch.randn(2, 5, 8) for _ in range(3))
    with pytest.raises(ValueError, match="does not broadcast"):
        mt.scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="not both"):
        mt.scaled_dot_product_attention(q, k, v, mask=torch.ones(5, 5, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match="dropout_p"):
        mt.scaled_dot_product_attention(q, k, v, dropout_p=1.0)
