"""mt.flops against independent references: PyTorch's FlopCounterMode, the model's own nn.Linear weights,
hand arithmetic for GPT-2 small, the bytes of real tensors after an AdamW step, and the tensors autograd saves.
"""

import pytest
import torch
import torch.nn as nn

import mastering_transformers as mt
from mastering_transformers import flops as F


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_config(seed, gpt2_style=False):
    g = torch.Generator().manual_seed(seed)
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=g))]  # noqa: E731
    n_head = pick([1, 2, 4])
    kw = dict(
        vocab_size=int(torch.randint(5, 70, (1,), generator=g)), block_size=32, n_layer=pick([1, 2, 3]),
        n_head=n_head, n_embd=n_head * pick([4, 8]), tie_weights=pick([True, False]), bias=pick([True, False]),
        d_ff=pick([None, 24]),
    )
    if not gpt2_style:
        kw.update(mlp=pick(["gelu", "swiglu"]), norm=pick(["layer", "rms"]), pos=pick(["learned", "rope"]),
                  n_kv_head=pick([None, 1]))
    return mt.GPTConfig(**kw)


@pytest.mark.parametrize("seed", range(6))
def test_flops_per_token_equals_pytorchs_flop_counter(seed):
    cfg = random_config(seed)
    torch.manual_seed(seed)
    model = mt.GPT(cfg)
    g = torch.Generator().manual_seed(seed)
    b, t = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 33, (1,), generator=g))
    idx = torch.randint(0, cfg.vocab_size, (b, t), generator=g)
    assert F.count_flops(model, idx) == b * t * F.flops_per_token(cfg, seq_len=t)
    assert F.count_flops(model, idx, backward=False) == b * t * F.flops_per_token(cfg, seq_len=t, training=False)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("seed", range(4))
def test_matmul_params_are_the_linear_weights(seed):
    cfg = random_config(seed)
    model = mt.GPT(cfg)
    weights = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)}
    assert F.matmul_params(cfg) == sum(weights.values())  # a tied head is the embedding matrix, counted once


def test_gpt2_small_by_hand():
    cfg = mt.train.model_config(mt.make_config("gpt2-124m"), 50304)
    n = 12 * (4 * 768 * 768 + 8 * 768 * 768) + 50304 * 768
    assert F.matmul_params(cfg) == n == 123_568_128
    assert F.flops_per_token(cfg) == 6 * n + 12 * 12 * 1024 * 768
    assert F.flops_per_token(cfg, seq_len=1, training=False) == 2 * n + 4 * 12 * 768


def test_mfu_and_expected_throughput():
    assert F.mfu(1000.0, 6e9, 12e12) == pytest.approx(0.5)
    fpt = 7.3e8
    tps = F.expected_tokens_per_s(fpt, F.PEAK_FLOPS["H100-SXM-bf16"], mfu=0.4)
    assert F.mfu(tps, fpt, F.PEAK_FLOPS["H100-SXM-bf16"]) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        F.mfu(1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        F.expected_tokens_per_s(1.0, 1.0, mfu=1.5)
    with pytest.raises(ValueError, match="seq_len"):
        F.flops_per_token(random_config(0), seq_len=0)


@pytest.mark.parametrize("seed", range(5))
def test_activation_closed_form_equals_what_autograd_saves(seed):
    cfg = random_config(seed, gpt2_style=True)
    model = mt.GPT(cfg)
    g = torch.Generator().manual_seed(seed)
    b, t = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(2, 33, (1,), generator=g))
    idx = torch.randint(0, cfg.vocab_size, (b, t), generator=g)
    assert F.saved_activation_bytes(model, idx) == 4 * F.activation_elements(cfg, b, t)


def test_activation_closed_form_refuses_other_blocks():
    with pytest.raises(ValueError, match="saved_activation_bytes"):
        F.activation_elements(mt.GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4, mlp="swiglu"), 1, 4)


def test_saved_activation_bytes_on_a_known_graph():
    class Tiny(nn.Module):  # y = tanh(x W^T): Linear keeps x (not W), tanh keeps its output
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 5, bias=False)

        def forward(self, x, targets):
            return None, torch.tanh(self.lin(x)).sum()

    x = torch.randn(3, 6, requires_grad=True)
    assert F.saved_activation_bytes(Tiny(), x, x) == 4 * (3 * 6 + 3 * 5)


def test_weights_grads_and_adamw_state_closed_form_equal_real_tensors():
    cfg = random_config(3)
    model = mt.GPT(cfg)
    opt = model.configure_optimizer(0.1, 1e-3, fused=False)
    idx = torch.randint(0, cfg.vocab_size, (2, 8))
    model(idx, idx)[1].backward()
    opt.step()
    closed = {"weights": 4 * model.num_parameters(), "grads": 4 * model.num_parameters(),
              "optimizer": 8 * model.num_parameters()}
    n_tensors = len(list(model.parameters()))
    measured = {
        "weights": F.tensor_bytes(model.parameters()),
        "grads": F.tensor_bytes(p.grad for p in model.parameters()),
        "optimizer": F.tensor_bytes(opt.state.values()) - 4 * n_tensors,  # less one float32 step count per tensor
    }
    assert measured == closed
    gpt2 = F.training_memory(mt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), 2)
    n = mt.GPT(mt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)).num_parameters()
    assert gpt2["weights"] + gpt2["grads"] + gpt2["optimizer"] == 16 * n
    assert gpt2["total"] == 16 * n + gpt2["activations"]


def test_checkpointing_keeps_results_and_trades_memory():
    cfg = mt.GPTConfig(vocab_size=13, block_size=16, n_layer=3, n_head=2, n_embd=16)
    torch.manual_seed(0)
    plain = mt.GPT(cfg)
    torch.manual_seed(0)
    ckpt = F.checkpoint_blocks(mt.GPT(cfg))
    idx = torch.randint(0, 13, (2, 16))
    assert ckpt.state_dict().keys() == plain.state_dict().keys()
    _, l1 = plain(idx, idx)
    _, l2 = ckpt(idx, idx)
    l1.backward()
    l2.backward()
    torch.testing.assert_close(l2, l1)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=lambda m: f"{name}: {m}")
    saved_plain, saved_ckpt = F.saved_activation_bytes(plain, idx), F.saved_activation_bytes(ckpt, idx)
    assert saved_ckpt < saved_plain / 2
    flops_plain, flops_ckpt = F.count_flops(plain, idx), F.count_flops(ckpt, idx)
    assert flops_plain < flops_ckpt < 1.5 * flops_plain  # the blocks' forward runs twice
    F.checkpoint_blocks(ckpt, enabled=False)
    assert F.saved_activation_bytes(ckpt, idx) == saved_plain
