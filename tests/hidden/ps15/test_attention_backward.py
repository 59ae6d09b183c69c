"""Hidden checks for ps15 `attention_backward(q, k, v, d_out, causal=False)`, against autograd run here on attention
written here in float64 (softmax(Q K^T / sqrt(d) [+ causal -inf]) V).

One property per check: dV, dQ and dK, each without and with the causal mask. Shapes are random, with leading dims
(size-1 ones included), T_q != T_k and d != d_v when not causal.
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, max_error

PLAIN = [(17001, (2, 3), 5, 7, 4, 6), (17002, (), 4, 2, 8, 3), (17003, (1, 2, 1), 6, 9, 5, 5)]
CAUSAL = [(17101, (2,), 6, 6, 4, 3), (17102, (1, 3), 9, 9, 8, 8), (17103, (), 5, 5, 2, 7)]


def _inputs(seed, lead, t_q, t_k, d, d_v):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, t_q, d, generator=g, dtype=torch.float64)
    k = torch.randn(*lead, t_k, d, generator=g, dtype=torch.float64)
    v = torch.randn(*lead, t_k, d_v, generator=g, dtype=torch.float64)
    d_out = torch.randn(*lead, t_q, d_v, generator=g, dtype=torch.float64)
    return q, k, v, d_out


def _reference(q, k, v, d_out, causal):
    q, k, v = (x.clone().requires_grad_(True) for x in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    out = torch.softmax(scores, -1) @ v
    return torch.autograd.grad(out, (q, k, v), d_out)


def _check(attention_backward, cases, causal, index, name):
    for case in cases:
        q, k, v, d_out = _inputs(*case)
        result = attention_backward(q, k, v, d_out, causal=causal)
        assert isinstance(result, (tuple, list)) and len(result) == 3, (
            f"attention_backward must return a tuple (dq, dk, dv); got {type(result).__name__}"
        )
        reference = _reference(q, k, v, d_out, causal)[index]
        what = f"{name} for q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}" + (" (causal)" if causal else "")
        error = max_error(expect_tensor(result[index], what, tuple(reference.shape)), reference, what)
        yield what, error


FORMULAS = {
    "dV": "dV = P^T dO, with P the attention weights",
    "dQ": "dS = P * (dP - rowsum(P * dP)) with dP = dO V^T, then dQ = dS K / sqrt(d)",
    "dK": "dS as for dQ, then dK = dS^T Q / sqrt(d)",
}


def _assert_close(attention_backward, cases, causal, index, name):
    for what, error in _check(attention_backward, cases, causal, index, name):
        hint = " (P must include the causal mask: masked keys get weight 0, here too)" if causal else ""
        assert error < 1e-8, f"{what} differs from the gradient (largest error {error:.3g}): {FORMULAS[name]}{hint}"


@check(points=1)
def test_dv(attention_backward):
    """dV"""
    _assert_close(attention_backward, PLAIN, False, 2, "dV")


@check(points=1)
def test_dv_causal(attention_backward):
    """dV with the causal mask"""
    _assert_close(attention_backward, CAUSAL, True, 2, "dV")


@check(points=1)
def test_dq(attention_backward):
    """dQ"""
    _assert_close(attention_backward, PLAIN, False, 0, "dQ")


@check(points=1)
def test_dq_causal(attention_backward):
    """dQ with the causal mask"""
    _assert_close(attention_backward, CAUSAL, True, 0, "dQ")


@check(points=1)
def test_dk(attention_backward):
    """dK"""
    _assert_close(attention_backward, PLAIN, False, 1, "dK")


@check(points=1)
def test_dk_causal(attention_backward):
    """dK with the causal mask"""
    _assert_close(attention_backward, CAUSAL, True, 1, "dK")
