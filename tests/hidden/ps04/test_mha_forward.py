"""Hidden checks for ps04 `mha_forward(x, w_q, w_k, w_v, w_o, n_head, causal=False)`, against
`torch.nn.MultiheadAttention` with the same weights (no biases), computed in float64.

While these checks run, the student's `split_heads` and `merge_heads` are replaced by the references in
ISOLATE, so a bug in those is not charged a second time here.
"""

import math

import torch

from mastering_transformers.grading import check


def _split(x, n_head):
    b, t, c = x.shape
    return x.view(b, t, n_head, c // n_head).transpose(1, 2)


def _merge(x):
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


ISOLATE = {"split_heads": _split, "merge_heads": _merge}


def _case(seed, b, t, c):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, c, generator=g)
    w_q, w_k, w_v, w_o = (torch.randn(c, c, generator=g) / math.sqrt(c) for _ in range(4))
    return x, w_q, w_k, w_v, w_o


def _reference(x, w_q, w_k, w_v, w_o, n_head, causal):
    c = x.shape[-1]
    ref = torch.nn.MultiheadAttention(c, n_head, bias=False, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([w_q.T, w_k.T, w_v.T]).double())  # nn keeps (out, in)
        ref.out_proj.weight.copy_(w_o.T.double())
    t = x.shape[1]
    future = torch.ones(t, t, dtype=torch.bool).triu(1) if causal else None  # True = forbidden in torch.nn
    x64 = x.double()
    return ref(x64, x64, x64, attn_mask=future, need_weights=False)[0]


def _run(mha_forward, x, w_q, w_k, w_v, w_o, n_head, causal=False):
    out = mha_forward(x, w_q, w_k, w_v, w_o, n_head, causal=causal)
    assert isinstance(out, torch.Tensor), f"mha_forward must return a tensor; got {type(out).__name__}"
    assert tuple(out.shape) == tuple(x.shape), (
        f"for x of shape {tuple(x.shape)} the output must have the same shape (B, T, C); got {tuple(out.shape)}"
    )
    return out


def _error(out, reference):
    return float((out.double() - reference.detach()).abs().nan_to_num(float("inf")).max())


@check(points=1)
def test_shape(mha_forward):
    """output shape (B, T, C)"""
    for seed, (b, t, c, h) in enumerate([(2, 5, 12, 3), (1, 7, 8, 4)]):
        _run(mha_forward, *_case(4600 + seed, b, t, c), h)


@check(points=1)
def test_single_head(mha_forward):
    """with n_head=1 it matches single-head attention"""
    for seed, (b, t, c) in enumerate([(2, 6, 8), (3, 4, 5)]):
        case = _case(4700 + seed, b, t, c)
        error = _error(_run(mha_forward, *case, 1), _reference(*case, 1, False))
        assert error < 1e-4, (
            f"with one head (D = C = {c}) the output must be softmax(q k^T / sqrt(D)) v @ w_o with "
            f"q = x @ w_q etc.; max error {error:.2g}"
        )


@check(points=1)
def test_matches_reference(mha_forward):
    """with several heads it matches torch.nn.MultiheadAttention"""
    for seed, (b, t, c, h) in enumerate([(2, 5, 12, 3), (2, 6, 16, 4), (1, 3, 8, 8)]):
        case = _case(4800 + seed, b, t, c)
        error = _error(_run(mha_forward, *case, h), _reference(*case, h, False))
        assert error < 1e-4, (
            f"with {h} heads of size D = {c // h} the output does not match multi-head attention (max error "
            f"{error:.2g}): split q, k, v into heads, scale by 1/sqrt(D) (the head size, not C), merge, then w_o"
        )


@check(points=1)
def test_causal(mha_forward):
    """causal=True: matches the reference and ignores later tokens"""
    for seed, (b, t, c, h) in enumerate([(2, 6, 12, 3), (1, 5, 8, 2)]):
        x, w_q, w_k, w_v, w_o = _case(4900 + seed, b, t, c)
        error = _error(_run(mha_forward, x, w_q, w_k, w_v, w_o, h, causal=True),
                       _reference(x, w_q, w_k, w_v, w_o, h, True))
        x_changed = x.clone()
        x_changed[:, -1] += 1.0  # change only the last token
        changed = _run(mha_forward, x_changed, w_q, w_k, w_v, w_o, h, causal=True)
        before = _run(mha_forward, x, w_q, w_k, w_v, w_o, h, causal=True)
        leak = float((changed[:, :-1] - before[:, :-1]).abs().nan_to_num(float("inf")).max())
        assert leak < 1e-6, (
            f"with causal=True, changing the last token must not change the outputs at earlier positions; "
            f"they changed by up to {leak:.2g}: query i may attend to keys j <= i only"
        )
        assert error < 1e-4, (
            f"with causal=True the output does not match causal multi-head attention (max error {error:.2g}): "
            f"mask the scores where j > i with -inf before the softmax"
        )
