"""Hidden checks for ps13 `flops_per_token(n_layer, n_embd, n_head, vocab_size, seq_len, n_kv_head=None, d_ff=None,
mlp="gelu", training=True) -> int`, against PyTorch's own count: ``torch.utils.flop_counter.FlopCounterMode`` around
one forward (and backward) pass of the course GPT built with that configuration, divided by the tokens.

One property per check: a dense GELU model (training); grouped-query attention (K and V narrower than Q); SwiGLU
(three MLP matrices); a forward pass only (training=False); the defaults (n_kv_head = n_head, d_ff = 4 n_embd, GELU,
training) and a Python int.
"""

import random

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mastering_transformers.gpt import GPT, GPTConfig
from mastering_transformers.grading import check


def _counted(n_layer, n_embd, n_head, vocab_size, seq_len, n_kv_head=None, d_ff=None, mlp="gelu", training=True):
    """FLOPs per token as PyTorch counts them (mm/addmm/bmm: products only)."""
    cfg = GPTConfig(vocab_size=vocab_size, block_size=seq_len, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                    n_kv_head=n_kv_head, d_ff=d_ff if d_ff is not None else 4 * n_embd, mlp=mlp,
                    bias=mlp == "gelu", attn_backend="mt")
    torch.manual_seed(0)
    model = GPT(cfg)
    idx = torch.randint(0, vocab_size, (1, seq_len))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(idx, idx)
        if training:
            loss.backward()
    return counter.get_total_flops() // seq_len


def _configs(seed: int, n: int, gqa: bool = False):
    rng = random.Random(seed)
    for _ in range(n):
        n_head = rng.choice([2, 4])
        n_kv = rng.choice([1, n_head // 2]) if gqa else None
        yield dict(n_layer=rng.randint(1, 3), n_embd=n_head * rng.choice([4, 8]), n_head=n_head,
                   vocab_size=rng.randint(7, 60), seq_len=rng.randint(1, 24), n_kv_head=n_kv,
                   d_ff=rng.choice([None, rng.randint(5, 40)]))


def _cases():
    """Every case of every check, with PyTorch's count, computed once when the checks are loaded (counting takes a
    while, and a check's time limit is meant for the student's code)."""
    cases = {"dense": list(_configs(13000, 5)), "gqa": list(_configs(13100, 5, gqa=True)), "swiglu": [],
             "forward": [], "defaults": []}
    for i, case in enumerate(_configs(13200, 4, gqa=True)):
        case["mlp"] = "swiglu"
        case["d_ff"] = case["d_ff"] or 4 * case["n_embd"]
        if i % 2:
            case.pop("d_ff")  # the default d_ff = 4 n_embd, for SwiGLU too
        cases["swiglu"].append(case)
    for case in _configs(13300, 4):
        case["training"] = False
        cases["forward"].append(case)
    cases["defaults"] = [dict(n_layer=a, n_embd=b, n_head=c, vocab_size=d, seq_len=e)
                         for a, b, c, d, e in [(2, 16, 4, 30, 8), (1, 8, 2, 11, 1), (3, 12, 3, 50, 17)]]
    return {name: [(case, _counted(**case)) for case in group] for name, group in cases.items()}


CASES = _cases()


def _check(flops_per_token, case: dict, expected: int, what: str) -> None:
    got = flops_per_token(**case)
    args = ", ".join(f"{k}={v!r}" for k, v in case.items())
    assert got == expected, f"flops_per_token({args}) = {got}; PyTorch counts {expected} FLOPs per token ({what})"


@check(points=1)
def test_dense(flops_per_token):
    """a dense GELU model, training: 6 N + 12 L T C"""
    for case, expected in CASES["dense"]:
        _check(flops_per_token, case, expected,
               "training: 3 x the forward, 2 N per weight in products + 4 L T C for attention")


@check(points=1)
def test_gqa(flops_per_token):
    """grouped-query attention: W_K and W_V have n_kv_head heads, attention still n_head"""
    for case, expected in CASES["gqa"]:
        _check(flops_per_token, case, expected, "W_K and W_V are C x (n_kv_head * C / n_head); QK^T and AV still "
               "cover all n_head query heads")


@check(points=1)
def test_swiglu(flops_per_token):
    """SwiGLU: three C x d_ff matrices in the MLP"""
    for case, expected in CASES["swiglu"]:
        _check(flops_per_token, case, expected, "SwiGLU has a gate, an up and a down matrix; d_ff defaults to 4 n_embd")


@check(points=1)
def test_forward_only(flops_per_token):
    """training=False: the forward pass alone, 2 N + 4 L T C"""
    for case, expected in CASES["forward"]:
        _check(flops_per_token, case, expected, "a forward pass only: 2 per weight, 4 L T C for attention, no backward")


@check(points=1)
def test_defaults_and_int(flops_per_token):
    """the defaults (n_kv_head = n_head, d_ff = 4 n_embd, GELU, training) and a Python int"""
    for case, expected in CASES["defaults"]:
        args = tuple(case.values())
        got = flops_per_token(*args)
        assert type(got) is int, f"flops_per_token must return a Python int; got {type(got).__name__}"
        assert got == expected, (
            f"flops_per_token{args} with the defaults = {got}; PyTorch counts {expected} (defaults: n_kv_head = "
            f"n_head, d_ff = 4 n_embd, mlp='gelu', training=True)"
        )
