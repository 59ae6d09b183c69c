"""mt.LayerNorm and mt.RMSNorm against torch.nn.LayerNorm / torch.nn.RMSNorm (weights copied), the formulas
in NumPy float64, gradcheck, and the invariances the chapter states (LayerNorm: shift and scale; RMSNorm: scale only).
"""

import random

import numpy as np
import pytest
import torch

import mastering_transformers as mt


def random_input(seed, dtype=torch.float32):
    """x of shape (*lead, C) with 0-2 leading dims, nonzero mean and non-unit spread per token; and C."""
    rng = random.Random(seed)
    lead = tuple(rng.randint(1, 4) for _ in range(rng.randint(0, 2)))
    c = rng.randint(2, 40)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, c, generator=g, dtype=dtype) * rng.uniform(0.1, 5) + rng.uniform(-3, 3)
    return x, c


def randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


@pytest.mark.parametrize("seed", range(20))
def test_layer_norm_matches_torch(seed):
    x, c = random_input(seed)
    eps = [1e-5, 1e-3, 0.1][seed % 3]
    ref = randomise(torch.nn.LayerNorm(c, eps=eps), seed)
    ours = mt.LayerNorm(c, eps=eps)
    ours.load_state_dict(ref.state_dict())  # same parameter names and shapes as torch's
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_layer_norm_without_bias_matches_torch(seed):
    x, c = random_input(50 + seed)
    ref = randomise(torch.nn.LayerNorm(c, bias=False), seed)
    ours = mt.LayerNorm(c, bias=False)
    assert ours.bias is None and [n for n, _ in ours.named_parameters()] == ["weight"]
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(20))
def test_rms_norm_matches_torch(seed):
    x, c = random_input(100 + seed)
    eps = [1e-6, 1e-3, 0.1][seed % 3]
    ref = randomise(torch.nn.RMSNorm(c, eps=eps), seed)
    ours = mt.RMSNorm(c, eps=eps)
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(10))
def test_formulas_in_float64_numpy(seed):
    x, c = random_input(200 + seed, dtype=torch.float64)
    ln, rms = randomise(mt.LayerNorm(c, eps=1e-3).double(), seed), randomise(mt.RMSNorm(c, eps=1e-3).double(), seed)
    a, w, b = x.numpy(), ln.weight.detach().numpy(), ln.bias.detach().numpy()
    mean, var = a.mean(-1, keepdims=True), a.var(-1, ddof=0, keepdims=True)  # biased variance
    expected_ln = (a - mean) / np.sqrt(var + 1e-3) * w + b
    expected_rms = a / np.sqrt((a**2).mean(-1, keepdims=True) + 1e-3) * rms.weight.detach().numpy()
    np.testing.assert_allclose(ln(x).detach().numpy(), expected_ln, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rms(x).detach().numpy(), expected_rms, rtol=1e-12, atol=1e-12)


def test_layer_norm_uses_biased_variance():
    # With C = 2 the biased and unbiased variances differ by a factor of 2, so only one can be right.
    x = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    y = mt.LayerNorm(2, eps=0.0).double()(x)
    torch.testing.assert_close(y, torch.tensor([[-1.0, 1.0]], dtype=torch.float64))
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(1, dtype=torch.float64))


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_gradcheck(norm):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    module = mt.LayerNorm(5) if norm == "layer" else mt.RMSNorm(5)
    module = randomise(module.double(), 1)
    params = tuple(module.parameters())

    def f(x, *p):
        return torch.func.functional_call(module, dict(zip([n for n, _ in module.named_parameters()], p)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


@pytest.mark.parametrize("seed", range(5))
def test_layer_norm_invariant_to_shift_and_scale(seed):
    x, c = random_input(300 + seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    ln = randomise(mt.LayerNorm(c, eps=0.0).double(), seed)
    shift = 10 * torch.randn(*x.shape[:-1], 1, generator=g, dtype=torch.float64)  # one shift per token
    scale = torch.rand(*x.shape[:-1], 1, generator=g, dtype=torch.float64) * 20 + 0.05  # one a > 0 per token
    torch.testing.assert_close(ln(scale * x + shift), ln(x))


@pytest.mark.parametrize("seed", range(5))
def test_rms_norm_invariant_to_scale_but_not_to_shift(seed):
    x, c = random_input(400 + seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    rms = randomise(mt.RMSNorm(c, eps=0.0).double(), seed)
    scale = torch.rand(*x.shape[:-1], 1, generator=g, dtype=torch.float64) * 20 + 0.05
    torch.testing.assert_close(rms(scale * x), rms(x))
    assert (rms(x + 1.0) - rms(x)).abs().max() > 1e-2  # a shift changes the output


def test_scaled_by_a_negative_number_flips_the_sign():
    x = torch.randn(4, 8, dtype=torch.float64)
    ln, rms = mt.LayerNorm(8, eps=0.0).double(), mt.RMSNorm(8, eps=0.0).double()
    torch.testing.assert_close(ln(-3 * x), -ln(x))
    torch.testing.assert_close(rms(-3 * x), -rms(x))


def test_each_token_is_normalised_on_its_own():
    """Changing one token (anywhere in the batch or the sequence) changes only that token's output."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, generator=g)
    for module in (mt.LayerNorm(8), mt.RMSNorm(8)):
        y = module(x)
        x2 = x.clone()
        x2[1, 2] = 100 * torch.randn(8, generator=g)
        changed = (module(x2) - y).abs().amax(-1) > 0
        expected = torch.zeros(3, 5, dtype=torch.bool)
        expected[1, 2] = True
        assert torch.equal(changed, expected)


def test_constant_and_zero_tokens_stay_finite():
    ln = randomise(mt.LayerNorm(6), 0)
    x = torch.full((2, 6), 3.0)  # no spread: (x - mean) = 0, eps keeps 0 / sqrt(0 + eps) finite
    torch.testing.assert_close(ln(x), ln.bias.detach().expand(2, 6))
    rms = randomise(mt.RMSNorm(6), 0)
    torch.testing.assert_close(rms(torch.zeros(2, 6)), torch.zeros(2, 6))
    assert torch.isfinite(ln(torch.zeros(1, 6))).all()


def test_tiny_spread_is_damped_by_eps():
    # The variance of [0.001, 0.002, 0.003] is 6.7e-7, below eps = 1e-5: the output is far from unit variance.
    x = torch.tensor([[0.001, 0.002, 0.003]], dtype=torch.float64)
    y = mt.LayerNorm(3).double()(x)
    expected = (x - 0.002) / (2 / 3 * 1e-6 + 1e-5) ** 0.5
    torch.testing.assert_close(y, expected)
    assert y.pow(2).mean() < 0.1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_input_keeps_its_dtype_and_is_accurate(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 7, 64, generator=g) * 30 + 100).to(dtype)  # large mean: a naive fp16 variance suffers
    for module, ref in [(mt.LayerNorm(64), torch.nn.LayerNorm(64)), (mt.RMSNorm(64), torch.nn.RMSNorm(64, eps=1e-6))]:
        y = module(x)
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), ref(x.float()), atol=2e-2, rtol=2e-2)


def test_works_under_autograd_and_gives_parameter_gradients():
    x = torch.randn(2, 3, 4, requires_grad=True)
    for module in (mt.LayerNorm(4), mt.RMSNorm(4)):
        module(x).pow(3).sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize("cls", [mt.LayerNorm, mt.RMSNorm])
def test_wrong_feature_size_raises(cls):
    with pytest.raises(ValueError, match=r"last dim.*d_model=8.*\(2, 3, 7\)"):
        cls(8)(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="d_model=8"):
        cls(8)(torch.tensor(1.0))


@pytest.mark.parametrize("cls", [mt.LayerNorm, mt.RMSNorm])
def test_bad_arguments_raise(cls):
    with pytest.raises(ValueError, match="positive int"):
        cls(0)
    with pytest.raises(ValueError, match="positive int"):
        cls(4.0)
    with pytest.raises(ValueError, match="eps"):
        cls(4, eps=-1e-5)


def test_repr_and_defaults():
    assert mt.LayerNorm(16).eps == 1e-5 and mt.RMSNorm(16).eps == 1e-6
    assert "16, eps=1e-05, bias=True" in repr(mt.LayerNorm(16))
    assert "16, eps=1e-06" in repr(mt.RMSNorm(16))
