"""Scaling-law fits, compute budgets and FLOP counts (mt.scaling), and the Post-LN switch of GPTConfig (chapter 16)."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mastering_transformers as mt

torch.set_num_threads(1)


# -- power laws ---------------------------------------------------------------------------------------


def test_power_law_recovers_exact_data():
    x = torch.tensor([3.0, 10.0, 40.0, 200.0, 1000.0], dtype=torch.float64)
    fit = mt.fit_power_law(x, 7.5 * x**-0.37)
    assert fit.coef == pytest.approx(7.5, rel=1e-9)
    assert fit.exponent == pytest.approx(-0.37, abs=1e-12)
    assert fit.exponent_stderr == pytest.approx(0.0, abs=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def test_power_law_stderr_matches_matrix_least_squares():
    g = torch.Generator().manual_seed(3)
    x = torch.logspace(1, 4, 9, dtype=torch.float64)
    y = 2.0 * x**0.6 * torch.exp(0.1 * torch.randn(9, generator=g, dtype=torch.float64))
    fit = mt.fit_power_law(x.tolist(), y.tolist())
    # independent reference: the design matrix [1, log x], sigma^2 (X^T X)^-1 for the covariance
    X = torch.stack([torch.ones(9, dtype=torch.float64), x.log()], dim=1)
    beta = torch.linalg.lstsq(X, y.log()[:, None]).solution.squeeze(1)
    resid = y.log() - X @ beta
    cov = (resid @ resid / (9 - 2)) * torch.linalg.inv(X.T @ X)
    assert fit.exponent == pytest.approx(float(beta[1]), rel=1e-9)
    assert fit.coef == pytest.approx(math.exp(float(beta[0])), rel=1e-9)
    assert fit.exponent_stderr == pytest.approx(math.sqrt(float(cov[1, 1])), rel=1e-9)


def test_power_law_rejects_bad_input():
    with pytest.raises(ValueError, match="> 0"):
        mt.fit_power_law([1.0, 2.0, 3.0], [1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="same length"):
        mt.fit_power_law([1.0, 2.0], [1.0])
    assert mt.fit_power_law([1.0, 2.0], [3.0, 4.0]).exponent_stderr == math.inf


# -- the loss surface and compute-optimal budgets -----------------------------------------------------


def test_loss_surface_fit_recovers_known_parameters():
    true = {"E": 1.2, "A": 30.0, "B": 60.0, "alpha": 0.4, "beta": 0.35}
    n = torch.tensor([6e3, 1.4e4, 2.5e4, 5.5e4, 1e5]).repeat_interleave(4)
    d = torch.tensor([2.5e4, 1e5, 3e5, 6e5]).repeat(5)
    fit = mt.fit_loss_surface(n, d, mt.loss_surface(n, d, true))
    for key in ("alpha", "beta"):
        assert fit[key] == pytest.approx(true[key], abs=0.02), key
    assert fit["E"] == pytest.approx(true["E"], abs=0.02)


def test_compute_optimal_matches_a_brute_force_search():
    params = {"E": 1.0, "A": 50.0, "B": 300.0, "alpha": 0.3, "beta": 0.4}
    for compute in (1e15, 1e19):
        n_opt, d_opt = mt.compute_optimal(compute, params)
        assert 6 * n_opt * d_opt == pytest.approx(compute, rel=1e-9)
        grid = torch.logspace(math.log10(n_opt) - 2, math.log10(n_opt) + 2, 40001, dtype=torch.float64)
        losses = mt.loss_surface(grid, compute / (6 * grid), params)
        assert float(grid[losses.argmin()]) == pytest.approx(n_opt, rel=1e-3)


def test_published_refit_implies_about_twenty_tokens_per_parameter():
    # Besiroglu et al. (2024) refitted Hoffmann et al.'s data; at Gopher's budget it gives ~20 tokens/parameter
    n_opt, d_opt = mt.compute_optimal(5.76e23, mt.CHINCHILLA_REFIT)
    assert 15 < d_opt / n_opt < 25


def test_chinchilla_budget_rule_of_thumb():
    n, d = mt.chinchilla_budget(5.76e23)
    assert 6 * n * d == pytest.approx(5.76e23)
    assert d / n == pytest.approx(20.0)
    assert n == pytest.approx(69.3e9, rel=0.01)  # Chinchilla: 70B parameters, 1.4T tokens
    with pytest.raises(ValueError):
        mt.chinchilla_budget(-1.0)


# -- FLOPs of attention and the MLP --------------------------------------------------------------------


def _counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("seq_len", [8, 48])
def test_attention_ffn_flops_match_pytorch_counter(seq_len):
    c, b = 32, 2
    x = torch.randn(b, seq_len, c)
    attn = mt.MultiHeadAttention(c, 4, bias=False, backend="mt")  # explicit matmuls, which the counter sees
    mlp = mt.MLP(c, 4 * c, bias=False)
    expected = mt.attention_ffn_flops(c, seq_len)
    tokens = b * seq_len
    assert _counted_flops(lambda: mlp(x)) == expected["ffn"] * tokens
    proj = _counted_flops(lambda: [attn.q_proj(x), attn.k_proj(x), attn.v_proj(x), attn.o_proj(x)])
    assert proj == expected["qkvo"] * tokens
    total = _counted_flops(lambda: attn(x, is_causal=False))
    assert total - proj == expected["scores"] * tokens


def test_scores_overtake_the_mlp_at_four_times_the_width():
    c = 64
    assert mt.attention_ffn_flops(c, 4 * c)["scores"] == mt.attention_ffn_flops(c, 4 * c)["ffn"]
    assert mt.attention_ffn_flops(c, 4 * c - 1)["scores"] < mt.attention_ffn_flops(c, 4 * c - 1)["ffn"]


# -- the Post-LN switch used by the ablations ----------------------------------------------------------


def test_gpt_post_ln_blocks_normalise_after_each_residual_addition():
    torch.manual_seed(0)
    cfg = mt.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, prenorm=False)
    model = mt.GPT(cfg).eval()
    assert all(not blk.norm_first for blk in model.blocks)
    idx = torch.randint(11, (2, 8))
    x = model.embed(idx)
    for blk in model.blocks:  # Vaswani et al.: x = LN(x + Sublayer(x)), written out from the pieces
        x = blk.norm_1(x + blk.attn(x, is_causal=True))
        h = blk.mlp.fc_out(torch.nn.functional.gelu(blk.mlp.fc_in(x)))
        x = blk.norm_2(x + h)
    ref = model.lm_head(model.norm_f(x))
    torch.testing.assert_close(model(idx)[0], ref, rtol=1e-5, atol=1e-5)
    assert mt.GPT(mt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)).blocks[0].norm_first
    with pytest.raises(ValueError, match="prenorm"):
        mt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16, prenorm=1)
