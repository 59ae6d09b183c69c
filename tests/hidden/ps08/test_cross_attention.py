"""Hidden checks for ps08 `cross_attention(x_dec, enc, w_q, w_k, w_v, w_o, n_head, src_lengths=None)`, against
`torch.nn.MultiheadAttention` (query = the decoder's states, key = value = the encoder's states, the same weights,
no biases, `key_padding_mask` for the source's padding), run in float64 on the trusted side.

One property per check: a single source position gives every query the encoder's value (a weighted average of the
encoder's values, whatever the scores); single-head attention; several heads; the source padding mask (padding
positions holding large values, extra padding appended, lengths of S equal to no mask); the gradients with respect
to every input, which chapter 8 trains through: the vector-Jacobian products from autograd in the student's process
must agree with finite differences of the student's own function, so a wrong forward pass is not charged twice.
Shapes cross T != S, B = 1, T = 1, S = 1, n_head = 1 and n_head = C.

While these checks run, the student's `padding_mask` is replaced by the reference in ISOLATE.
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _reference_padding_mask(lengths, t):
    return (torch.arange(t)[None, :] < torch.as_tensor(lengths)[:, None])[:, None, None, :]


ISOLATE = {"padding_mask": _reference_padding_mask}


def _case(seed: int, b: int, t: int, s: int, c: int):
    """x_dec (B, T, C), enc (B, S, C) and four (C, C) weights, in float64."""
    g = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(b, t, c, generator=g, dtype=torch.float64)
    enc = 1.5 * torch.randn(b, s, c, generator=g, dtype=torch.float64) + 0.3
    ws = [torch.randn(c, c, generator=g, dtype=torch.float64) / math.sqrt(c) for _ in range(4)]
    return x, enc, *ws


def _lengths(seed: int, b: int, s: int) -> torch.Tensor:
    """Source lengths in [1, S]: one full and one of length 1 when B allows."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, s + 1, (b,), generator=g)
    if b >= 2:
        lengths[0], lengths[-1] = s, 1
    elif s > 1:
        lengths[0] = s - 1
    return lengths


def _reference(x, enc, w_q, w_k, w_v, w_o, n_head, src_lengths=None):
    c = x.shape[-1]
    ref = torch.nn.MultiheadAttention(c, n_head, bias=False, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([w_q.T, w_k.T, w_v.T]).double())  # nn keeps (out, in)
        ref.out_proj.weight.copy_(w_o.T.double())
        ignore = None
        if src_lengths is not None:  # True = ignore this key, in torch.nn's convention
            ignore = torch.arange(enc.shape[1])[None, :] >= torch.as_tensor(src_lengths)[:, None]
        return ref(x.double(), enc.double(), enc.double(), key_padding_mask=ignore, need_weights=False)[0]


def _run(cross_attention, x, enc, w_q, w_k, w_v, w_o, n_head, src_lengths=None) -> torch.Tensor:
    if src_lengths is None:
        out = cross_attention(x, enc, w_q, w_k, w_v, w_o, n_head)
    else:
        out = cross_attention(x, enc, w_q, w_k, w_v, w_o, n_head, src_lengths=src_lengths)
    b, t, c = x.shape
    expect_tensor(out, f"cross_attention on x_dec {(b, t, c)} and enc {tuple(enc.shape)}", (b, t, c))
    assert out.dtype == x.dtype, f"cross_attention must return x_dec's dtype {x.dtype}; got {out.dtype}"
    return out


@check(points=1)
def test_values_from_encoder(cross_attention):
    """one source position: every query gets enc[:, 0] @ w_v @ w_o (keys and values from the encoder)"""
    for seed, (b, t, c, h) in enumerate([(2, 5, 12, 3), (1, 4, 8, 1), (3, 7, 6, 6), (2, 1, 8, 2)]):
        x, enc, w_q, w_k, w_v, w_o = _case(8800 + seed, b, t, 1, c)
        out = _run(cross_attention, x, enc, w_q, w_k, w_v, w_o, h)
        expected = (enc @ w_v @ w_o).expand(b, t, c)
        error = largest(out - expected)
        assert error < 1e-8, (
            f"with one source position (S = 1, x_dec {(b, t, c)}, {h} heads) every row must be "
            f"enc[:, 0] @ w_v @ w_o (max error {error:.2g}): keys and values come from enc, queries from x_dec, "
            f"and the softmax runs over the source positions (the last axis)"
        )


@check(points=1)
def test_single_head(cross_attention):
    """n_head = 1: matches single-head cross-attention, T != S, float32 too"""
    for seed, (b, t, s, c) in enumerate([(2, 5, 7, 8), (1, 3, 9, 16), (3, 6, 2, 5), (1, 1, 4, 4)]):
        case = _case(8900 + seed, b, t, s, c)
        error = largest(_run(cross_attention, *case, 1) - _reference(*case, 1))
        assert error < 1e-8, (
            f"with one head (x_dec {(b, t, c)}, enc {(b, s, c)}) the output must be "
            f"softmax((x_dec @ w_q)(enc @ w_k)^T / sqrt({c})) (enc @ w_v) @ w_o; max error {error:.2g}"
        )
    case = _case(8950, 2, 4, 6, 8)
    out = _run(cross_attention, *(a.float() for a in case), 1)
    error = largest(out - _reference(*case, 1))
    assert error < 1e-4, f"in float32 (x_dec (2, 4, 8), enc (2, 6, 8)) the output differs by up to {error:.2g}"


@check(points=1)
def test_heads(cross_attention):
    """several heads: matches torch.nn.MultiheadAttention, n_head = C and B = 1 included"""
    for seed, (b, t, s, c, h) in enumerate([(2, 5, 7, 12, 3), (1, 4, 6, 16, 4), (3, 3, 5, 6, 6),
                                            (2, 6, 3, 8, 2), (1, 1, 5, 10, 5)]):
        case = _case(9000 + seed, b, t, s, c)
        error = largest(_run(cross_attention, *case, h) - _reference(*case, h))
        assert error < 1e-8, (
            f"with {h} heads (D = {c // h}, x_dec {(b, t, c)}, enc {(b, s, c)}) max error {error:.2g}: view as "
            f"(B, L, H, D) then transpose to (B, H, L, D) (a plain reshape mixes positions and heads), scale by "
            f"1/sqrt(D) with D the head size, transpose back before merging"
        )


@check(points=1)
def test_source_padding(cross_attention):
    """src_lengths: padding keys masked, any padding values and extra padding change nothing"""
    for seed, (b, t, s, c, h) in enumerate([(3, 4, 7, 12, 3), (1, 5, 6, 8, 1), (2, 1, 5, 8, 2), (4, 6, 3, 6, 1)]):
        x, enc, w_q, w_k, w_v, w_o = _case(9100 + seed, b, t, s, c)
        lengths = _lengths(9150 + seed, b, s)
        g = torch.Generator().manual_seed(9170 + seed)
        garbage = enc.clone()
        for i, n in enumerate(lengths.tolist()):  # the padding holds large values
            garbage[i, n:] = 50 * torch.randn(s - n, c, generator=g, dtype=torch.float64)
        extra = torch.cat([garbage, 50 * torch.randn(b, 3, c, generator=g, dtype=torch.float64)], dim=1)
        reference = _reference(x, enc, w_q, w_k, w_v, w_o, h, lengths)
        for label, memory in [("", enc), (" with large values in the padding", garbage),
                              (" with 3 more padding positions appended", extra)]:
            error = largest(_run(cross_attention, x, memory, w_q, w_k, w_v, w_o, h, lengths) - reference)
            assert error < 1e-8, (
                f"src_lengths = {lengths.tolist()}{label} (enc {tuple(memory.shape)}, {h} head(s)): max error "
                f"{error:.2g} from attention over the real source positions; give keys j >= src_lengths[b] the "
                f"score -inf before the softmax (weight exactly 0)"
            )
        full = torch.full((b,), s)
        error = largest(_run(cross_attention, x, enc, w_q, w_k, w_v, w_o, h, full)
                        - _reference(x, enc, w_q, w_k, w_v, w_o, h))
        assert error < 1e-8, f"src_lengths all equal to S = {s} must give the unmasked output; max error {error:.2g}"


@check(points=1)
def test_gradient(cross_attention):
    """gradients with respect to x_dec, enc and the four weights agree with finite differences"""
    names = ["x_dec", "enc", "w_q", "w_k", "w_v", "w_o"]
    checked = 0
    for seed, (b, t, s, c, h, masked) in enumerate([(2, 4, 5, 8, 2, False), (2, 3, 6, 6, 3, True),
                                                    (1, 5, 3, 4, 1, True)]):
        args = list(_case(9200 + seed, b, t, s, c))
        lengths = _lengths(9250 + seed, b, s) if masked else None
        g = torch.Generator().manual_seed(9270 + seed)
        cotangent = torch.randn(b, t, c, generator=g, dtype=torch.float64)
        kwargs = {} if lengths is None else {"src_lengths": lengths}
        out, grads = cross_attention.vjp((*args, h), cotangent, wrt=(0, 1, 2, 3, 4, 5), kwargs=kwargs)
        expect_tensor(out, "cross_attention's output", (b, t, c))
        if not torch.isfinite(out).all():
            continue  # a NaN output is the forward checks' business; its gradient cannot be compared
        checked += 1
        assert len(grads) == 6, "the gradients could not be computed"
        for name, grad, arg in zip(names, grads, args):
            if grad is not None:
                expect_tensor(grad, f"the gradient with respect to {name}", tuple(arg.shape))
        for k, name in enumerate(names):
            direction = torch.randn(args[k].shape, generator=g, dtype=torch.float64)
            eps = 1e-6
            plus, minus = list(args), list(args)
            plus[k], minus[k] = args[k] + eps * direction, args[k] - eps * direction
            numeric = float(((_run(cross_attention, *plus, h, lengths) - _run(cross_attention, *minus, h, lengths))
                             * cotangent).sum()) / (2 * eps)
            # no gradient at all (None) is right only where the output does not depend on the input
            analytic = 0.0 if grads[k] is None else float((grads[k].double() * direction).sum())
            gap = abs(numeric - analytic) / max(1.0, abs(numeric))
            assert gap < 1e-5, (
                f"the gradient with respect to {name} (autograd) differs from finite differences of your function "
                f"(relative gap {gap:.2g}{'; no autograd path from ' + name if grads[k] is None else ''}): no "
                f".detach(), .data, .item() or torch.no_grad() between the inputs and the output"
            )
    assert checked, "your output holds NaN or inf for every input of this check, so its gradient cannot be checked"
