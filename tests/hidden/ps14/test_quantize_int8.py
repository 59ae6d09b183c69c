"""Hidden checks for ps14 `quantize_int8(w)`: symmetric per-output-channel int8, scale_r = max_j |w_rj| / 127
(1 for a zero row), q = round(w / scale) in [-127, 127], compared with a float64 reference computed here."""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor

CASES = [(1491, 4, 7, (1.0, 0.01, 5.0, 0.0)), (1492, 1, 5, (0.3,)), (1493, 6, 1, (1, 2, 0, 3, 0.5, 1e-3)),
         (1494, 3, 33, (100.0, 1e-4, 2.0))]


def _w(seed, rows, cols, row_scales):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * torch.tensor(row_scales, dtype=torch.float32)[:, None]


def _reference_scale(w):
    amax = w.double().abs().amax(dim=1)
    return torch.where(amax > 0, amax / 127, torch.ones_like(amax))


def _call(quantize_int8, w):
    result = quantize_int8(w)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"quantize_int8 must return a tuple (q, scale); got {type(result).__name__}"
    )
    return result


@check(points=1)
def test_types_and_shapes(quantize_int8):
    """q is int8 (out, in), scale is float32 (out,)"""
    for seed, rows, cols, scales in CASES:
        q, s = _call(quantize_int8, _w(seed, rows, cols, scales))
        expect_tensor(q, "q", (rows, cols))
        expect_tensor(s, "scale", (rows,))
        assert q.dtype == torch.int8, f"q must have dtype torch.int8 (one byte per weight); got {q.dtype}"
        assert s.dtype == torch.float32, f"scale must have dtype torch.float32; got {s.dtype}"


@check(points=1)
def test_scales(quantize_int8):
    """one scale per row: max |w_r| / 127, and 1 for a row of zeros"""
    for seed, rows, cols, scales in CASES:
        w = _w(seed, rows, cols, scales)
        _, s = _call(quantize_int8, w)
        expect_tensor(s, "scale", (rows,))
        ref = _reference_scale(w)
        rel = ((s.double() - ref).abs() / ref).nan_to_num(nan=float("inf"))
        assert float(rel.max()) < 1e-5, (
            f"for rows with max |w| = {[f'{float(a):.3g}' for a in w.abs().amax(dim=1)]} the scales must be max |w_r| / 127 "
            f"per row (1 for a zero row): {[f'{float(a):.3g}' for a in ref]}; got {[f'{float(a):.3g}' for a in s]}"
        )


@check(points=1)
def test_values(quantize_int8):
    """q = round(w / scale) per row, within [-127, 127]"""
    for seed, rows, cols, scales in CASES:
        w = _w(seed, rows, cols, scales)
        q, _ = _call(quantize_int8, w)
        expect_tensor(q, "q", (rows, cols))
        ref = torch.round(w.double() / _reference_scale(w)[:, None]).clamp(-127, 127)
        wrong = (q.double() - ref).abs()
        assert int((wrong > 0).sum()) <= max(1, w.numel() // 100) and float(wrong.max()) <= 1, (
            f"q must be round(w / scale) with each row's own scale, rounded to the nearest integer (not truncated) "
            f"and within [-127, 127]; {int((wrong > 0).sum())} of {w.numel()} entries differ (by up to "
            f"{float(wrong.max()):.0f})"
        )
