"""Hidden checks for ps16 `lora_forward(x, weight, bias, lora_A, lora_B, alpha)`, against the linear layer with the
merged weight, `F.linear(x, W + (alpha / r) B A, b)`, computed here in float64.

One property per check: the exact output shape (no leading dims, size-1 dims, several) and dtype (float32 and
float64); the value with alpha = r (scale 1); the scale alpha / r for other alphas and ranks (rank 1 and full rank
included); bias=None behaving as a zero bias; the gradients with respect to x, A and B (compared with finite
differences of the student's own function), which fine-tuning trains through.
"""

import torch
import torch.nn.functional as F

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow, max_error


def _case(seed, lead, n_in, n_out, r, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)

    return rnd(*lead, n_in), rnd(n_out, n_in), rnd(n_out), rnd(r, n_in), rnd(n_out, r)


def _reference(x, w, b, a, bb, alpha):
    r = a.shape[0]
    return F.linear(x.double(), w.double() + (alpha / r) * bb.double() @ a.double(), None if b is None else b.double())


SHAPES = [((3, 4), 6, 5, 2), ((), 4, 7, 3), ((1, 1), 5, 3, 1), ((2, 1, 3), 8, 8, 8), ((1,), 3, 9, 2)]


@check(points=1)
def test_shape_and_dtype(lora_forward):
    """output shape (..., out) and the inputs' dtype"""
    for k, (lead, n_in, n_out, r) in enumerate(SHAPES):
        for dtype in (torch.float32, torch.float64):
            x, w, b, a, bb = _case(17600 + k, lead, n_in, n_out, r, dtype)
            out = lora_forward(x, w, b, a, bb, float(r))
            assert isinstance(out, torch.Tensor) and tuple(out.shape) == (*lead, n_out), (
                f"x of shape {(*lead, n_in)} and a weight ({n_out}, {n_in}) give an output of shape {(*lead, n_out)}; "
                f"got {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
            )
            assert out.dtype == dtype, f"for {dtype} inputs the output must be {dtype}; got {out.dtype}"


@check(points=1)
def test_matches_merged_weight(lora_forward):
    """equals the linear layer W + B A when alpha = r"""
    for k, (lead, n_in, n_out, r) in enumerate(SHAPES):
        x, w, b, a, bb = _case(17700 + k, lead, n_in, n_out, r)
        err = max_error(lora_forward(x, w, b, a, bb, float(r)), _reference(x, w, b, a, bb, float(r)), "the output")
        assert err < 1e-9, (
            f"with alpha = r = {r} the layer is x (W + B A)^T + b; your output differs by {err:.3g} (x {(*lead, n_in)}, "
            f"W {(n_out, n_in)}, A {(r, n_in)}, B {(n_out, r)})"
        )


@check(points=1)
def test_scale(lora_forward):
    """the update is scaled by alpha / r"""
    for k, (lead, n_in, n_out, r) in enumerate(SHAPES):
        for alpha in (1.0, 16.0, 2.5 * r + 1):
            if alpha == r:
                continue
            x, w, b, a, bb = _case(17800 + k, lead, n_in, n_out, r)
            err = max_error(lora_forward(x, w, b, a, bb, alpha), _reference(x, w, b, a, bb, alpha), "the output")
            assert err < 1e-9, (
                f"alpha = {alpha:g}, rank r = {r} (the rows of A): the update is scaled by alpha / r = {alpha / r:.4g}; "
                f"your output differs from x (W + (alpha / r) B A)^T + b by {err:.3g}"
            )


@check(points=1)
def test_no_bias(lora_forward):
    """bias=None: no bias added"""
    for k, (lead, n_in, n_out, r) in enumerate(SHAPES[:3]):
        x, w, _, a, bb = _case(17900 + k, lead, n_in, n_out, r)
        out = lora_forward(x, w, None, a, bb, 2.0)
        zero_bias = lora_forward(x, w, torch.zeros(n_out, dtype=w.dtype), a, bb, 2.0)
        err = max_error(out, zero_bias.double(), "the output with bias=None")
        assert err < 1e-9, (
            f"bias=None means no bias: the output must equal the one with a zero bias; they differ by {err:.3g}"
        )


@check(points=1)
def test_gradients(lora_forward):
    """gradients flow to A and B (and x)"""
    cases = [_case(18000 + k, lead, n_in, n_out, r) for k, (lead, n_in, n_out, r) in enumerate(SHAPES[:3])]
    args = [(x, w, b, a, bb, 3.0) for x, w, b, a, bb in cases]
    assert_gradients_flow(lora_forward, args, wrt=(0, 3, 4), what="lora_forward with respect to x, A and B", seed=18100)
