"""mt.flash (chapter 12) against independent references: torch.softmax / logsumexp, F.scaled_dot_product_attention,
autograd through the textbook formula, finite differences (gradcheck), and a brute-force count of causal tiles."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

import mastering_transformers as mt
from mastering_transformers import flash


def random_case(seed, dtype=torch.float64, same_length=False):
    rng = random.Random(seed)
    b, h = rng.randint(1, 2), rng.randint(1, 3)
    t_q = rng.randint(1, 40)
    t_k = t_q if same_length else rng.randint(1, 40)
    d, d_v = rng.choice([4, 8, 16, 32]), rng.choice([4, 8, 16])
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t_q, d, generator=g, dtype=dtype)
    k = torch.randn(b, h, t_k, d, generator=g, dtype=dtype)
    v = torch.randn(b, h, t_k, d_v, generator=g, dtype=dtype)
    return q, k, v, rng.randint(1, 17), rng.randint(1, 17)


def textbook(q, k, v, causal=False, scale=None):
    """softmax(Q K^T * scale, masked) V and the rows' log-sum-exp, written out with the full T x T matrix."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ k.transpose(-2, -1) * scale
    if causal:
        t_q, t_k = s.shape[-2:]
        s = s.masked_fill(torch.ones(t_q, t_k, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v, torch.logsumexp(s, dim=-1)


# ------------------------------------------------------------------------------------------------- online softmax


@pytest.mark.parametrize("seed", range(10))
def test_online_softmax_equals_softmax_for_any_block_size(seed):
    g = torch.Generator().manual_seed(seed)
    x = 5 * torch.randn(3, 4, 23, generator=g, dtype=torch.float64)
    x[0, 1, ::3] = float("-inf")  # some masked entries
    x[1, 2, :] = float("-inf")  # a fully masked row
    block = random.Random(seed).randint(1, 30)
    p, lse = mt.online_softmax(x, block)
    expected = torch.softmax(x, dim=-1)
    expected[1, 2] = 0.0  # mt's definition of a row with nothing to attend to
    torch.testing.assert_close(p, expected)
    torch.testing.assert_close(lse, torch.logsumexp(x, dim=-1))
    assert torch.isneginf(lse[1, 2])


@pytest.mark.parametrize("seed", range(10))
def test_online_update_over_random_splits_gives_max_and_sum(seed):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    x = 20 * torch.randn(6, 50, generator=g, dtype=torch.float64)  # large scores: exp would overflow unshifted
    cuts = sorted(rng.sample(range(1, 50), rng.randint(1, 10)))
    m = torch.full((6,), float("-inf"), dtype=torch.float64)
    l = torch.zeros(6, dtype=torch.float64)
    for lo, hi in zip([0, *cuts], [*cuts, 50]):
        m, l = flash.online_softmax_update(m, l, x[:, lo:hi])
    ref_m = x.max(dim=-1).values
    torch.testing.assert_close(m, ref_m)
    torch.testing.assert_close(l, torch.exp(x - ref_m[:, None]).sum(dim=-1))


def test_online_update_keeps_fully_masked_rows_at_zero():
    m, l = torch.full((2,), float("-inf")), torch.zeros(2)
    s = torch.tensor([[float("-inf")] * 3, [0.0, float("-inf"), 1.0]])
    m, l = flash.online_softmax_update(m, l, s)
    assert torch.isneginf(m[0]) and l[0] == 0 and not torch.isnan(l).any()
    assert math.isclose(l[1].item(), 1 + math.exp(-1), rel_tol=1e-6)


def test_online_update_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        flash.online_softmax_update(torch.zeros(3), torch.zeros(3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="block_size"):
        mt.online_softmax(torch.zeros(4), 0)


# ------------------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("seed", range(24))
def test_tiled_forward_matches_sdpa_in_float64(seed):
    q, k, v, bq, bk = random_case(seed)
    causal = seed % 2 == 1  # causal with T_q != T_k too: aligned at the top left like SDPA's is_causal
    out, lse = mt.tiled_attention_forward(q, k, v, causal=causal, block_q=bq, block_k=bk)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(lse, textbook(q, k, v, causal)[1], atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("seed", range(8))
def test_tiled_forward_matches_sdpa_in_float32_with_custom_scale(seed):
    q, k, v, bq, bk = random_case(100 + seed, dtype=torch.float32, same_length=True)
    scale = 0.05 + seed / 4
    for causal in (False, True):
        out, _ = mt.tiled_attention_forward(q, k, v, causal=causal, scale=scale, block_q=bq, block_k=bk)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_large_scores_do_not_overflow():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 50, 8, generator=g) for _ in range(3))
    out, lse = mt.tiled_attention_forward(100 * q, 100 * k, v, causal=True, block_q=7, block_k=9)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(100 * q, 100 * k, v, is_causal=True),
                               atol=1e-4, rtol=1e-4)


def test_half_precision_inputs_compute_in_float32():
    q, k, v, _, _ = random_case(7, dtype=torch.float32, same_length=True)
    out, lse = mt.tiled_attention_forward(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True, block_q=5, block_k=6)
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    ref = F.scaled_dot_product_attention(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(),
                                         is_causal=True)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_no_keys_gives_zero_rows_like_mt():
    q = torch.randn(1, 1, 3, 4)
    k, v = torch.randn(1, 1, 0, 4), torch.randn(1, 1, 0, 5)
    out, lse = mt.tiled_attention_forward(q, k, v)
    assert torch.equal(out, mt.scaled_dot_product_attention(q, k, v)[0]) and torch.equal(out, torch.zeros(1, 1, 3, 5))
    assert torch.isneginf(lse).all()


@pytest.mark.parametrize("t_q,t_k,bq,bk", [(64, 64, 16, 16), (37, 37, 8, 5), (10, 30, 4, 7), (30, 10, 7, 3), (5, 5, 8, 8)])
def test_causal_skips_exactly_the_tiles_above_the_diagonal(t_q, t_k, bq, bk):
    allowed = mt.causal_mask(t_q, t_k)  # brute force: a tile is skippable when no entry of it is allowed
    tiles = [(i, j) for i in range(0, t_q, bq) for j in range(0, t_k, bk)]
    skippable = sum(not allowed[i:i + bq, j:j + bk].any() for i, j in tiles)
    stats = {}
    q, k, v = torch.randn(1, 1, t_q, 4), torch.randn(1, 1, t_k, 4), torch.randn(1, 1, t_k, 4)
    mt.tiled_attention_forward(q, k, v, causal=True, block_q=bq, block_k=bk, stats=stats)
    assert stats == {"computed": len(tiles) - skippable, "skipped": skippable}
    assert flash.causal_block_counts(t_q, t_k, bq, bk) == (len(tiles) - skippable, skippable)
    stats = {}
    mt.tiled_attention_forward(q, k, v, causal=False, block_q=bq, block_k=bk, stats=stats)
    assert stats == {"computed": len(tiles), "skipped": 0}


def test_forward_never_holds_the_score_matrix():
    t = 512
    q, k, v = (torch.randn(1, 2, t, 16) for _ in range(3))
    score_bytes = 2 * t * t * 4
    with torch.no_grad(), mt.TensorMemory() as naive:
        mt.scaled_dot_product_attention(q, k, v)
    with torch.no_grad(), mt.TensorMemory() as tiled:
        mt.tiled_attention_forward(q, k, v, block_q=64, block_k=64)
    assert naive.peak >= 2 * score_bytes  # scores and weights, each (B, H, T, T)
    assert tiled.peak < score_bytes / 8


def test_tensor_memory_counts_new_storages_until_freed():
    x = torch.zeros(100)
    with mt.TensorMemory() as mem:
        a = torch.ones(1000)  # 4000 bytes
        view = x[:50] + 0  # a new 200-byte tensor; x[:50] itself is a view of an older tensor
        b = torch.ones(500, dtype=torch.float64)  # 4000 more
        del a
        c = torch.ones(10)  # 40
    assert mem.peak == 8200 and mem.current == 4240
    del view, b, c


# ------------------------------------------------------------------------------------------------- backward


@pytest.mark.parametrize("seed", range(12))
def test_tiled_backward_matches_autograd_through_the_textbook_formula(seed):
    q, k, v, bq, bk = random_case(200 + seed)
    causal = seed % 2 == 0
    g = torch.Generator().manual_seed(seed)
    dout = torch.randn(*q.shape[:-1], v.shape[-1], generator=g, dtype=q.dtype)
    out, lse = mt.tiled_attention_forward(q, k, v, causal=causal, block_q=bq, block_k=bk)
    dq, dk, dv = mt.tiled_attention_backward(q, k, v, out, lse, dout, causal=causal, block_q=bq, block_k=bk)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_out = textbook(*leaves, causal=causal)[0]
    ref = torch.autograd.grad(ref_out, leaves, dout)
    for name, ours, theirs in zip("qkv", (dq, dk, dv), ref):
        torch.testing.assert_close(ours, theirs, atol=1e-11, rtol=1e-9, msg=f"d{name} differs")


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_float64(causal):
    g = torch.Generator().manual_seed(int(causal))
    q, k, v = (torch.randn(1, 2, 11, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: mt.flash_attention(a, b, c, causal=causal, block_q=4, block_k=3),
                                     (q, k, v))
    q2 = torch.randn(2, 1, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k2, v2 = (torch.randn(2, 1, 9, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda a, b, c: mt.flash_attention(a, b, c, causal=causal, scale=0.7,
                                                                       block_q=2, block_k=4), (q2, k2, v2))


def test_flash_attention_gradients_match_sdpa_in_float32():
    g = torch.Generator().manual_seed(3)
    leaves = [torch.randn(2, 4, 70, 16, generator=g, requires_grad=True) for _ in range(3)]
    ours = mt.flash_attention(*leaves, causal=True, block_q=16, block_k=32)
    theirs = F.scaled_dot_product_attention(*leaves, is_causal=True)
    torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=1e-5)
    w = torch.randn(theirs.shape, generator=g)
    for a, b in zip(torch.autograd.grad((ours * w).sum(), leaves), torch.autograd.grad((theirs * w).sum(), leaves)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------- entry points


@pytest.mark.parametrize(
    "shapes,match",
    [
        (((2, 8, 4), (2, 8, 4), (2, 8, 4)), "4-D"),
        (((1, 2, 8, 4), (1, 2, 8, 5), (1, 2, 8, 4)), "head size"),
        (((1, 2, 8, 4), (1, 2, 8, 4), (1, 2, 7, 4)), "same length"),
        (((1, 2, 8, 4), (1, 3, 8, 4), (1, 3, 8, 4)), r"\(B, H\)"),
    ],
)
def test_bad_shapes_raise_clear_errors(shapes, match):
    q, k, v = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        mt.flash_attention(q, k, v)
    with pytest.raises(ValueError, match=match):
        mt.tiled_attention_forward(q, k, v)


def test_bad_options_raise_clear_errors():
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(ValueError, match="block_q"):
        mt.flash_attention(q, q, q, block_q=0)
    with pytest.raises(ValueError, match="dtype"):
        mt.flash_attention(q, q.double(), q)
    with pytest.raises(ValueError, match="floating"):
        mt.flash_attention(q.long(), q.long(), q.long())


def test_gpt_with_the_flash_backend_matches_the_course_backend():
    for pos in ("learned", "rope"):
        cfg = dict(vocab_size=20, block_size=24, n_layer=2, n_head=2, n_embd=16, pos=pos)
        torch.manual_seed(0)
        ref = mt.GPT(mt.GPTConfig(**cfg, attn_backend="mt")).double()
        torch.manual_seed(0)
        ours = mt.GPT(mt.GPTConfig(**cfg, attn_backend="flash")).double()
        idx = torch.randint(20, (3, 24), generator=torch.Generator().manual_seed(1))
        (lr, loss_r), (lo, loss_o) = ref(idx, idx), ours(idx, idx)
        torch.testing.assert_close(lo, lr, atol=1e-12, rtol=1e-10)
        loss_r.backward()
        loss_o.backward()
        for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
            torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=1e-9, msg=name)


def test_flash_backend_refuses_masks_and_dropout():
    backend = mt.attention.ATTENTION_BACKENDS["flash"]
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(ValueError, match="mask"):
        backend(q, q, q, mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="dropout"):
        backend(q, q, q, dropout_p=0.1)
    torch.testing.assert_close(backend(q, q, q, is_causal=True), F.scaled_dot_product_attention(q, q, q, is_causal=True))
