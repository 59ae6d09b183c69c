"""Hidden checks for ps15 `logit_lens(resid, norm_weight, unembed, eps=1e-5)`, against RMSNorm written here in float64
(x / sqrt(mean(x^2) + eps) * g) followed by a product with the unembedding's transpose.

One property per check: the shape (every leading dim, size-1 ones included, and a single vector); the values on
ordinary residual vectors; the RMS (no mean subtracted, unlike LayerNorm) and the norm's weight, on vectors far from
zero mean with a random weight; eps inside the square root, on tiny vectors, with the default eps and a given one.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, max_error


def _case(seed: int, lead: tuple, c: int, v: int, scale: float = 1.0, offset: float = 0.0, unit_weight=False):
    g = torch.Generator().manual_seed(seed)
    resid = offset + scale * torch.randn(*lead, c, generator=g, dtype=torch.float64)
    weight = torch.ones(c, dtype=torch.float64) if unit_weight else 1 + 0.5 * torch.randn(c, generator=g, dtype=torch.float64)
    unembed = torch.randn(v, c, generator=g, dtype=torch.float64)
    return resid, weight, unembed


def _reference(resid, weight, unembed, eps=1e-5):
    rms = torch.sqrt((resid * resid).mean(-1, keepdim=True) + eps)
    return torch.einsum("...c,vc->...v", resid / rms * weight, unembed)


def _relative(got, ref, what):
    return max_error(got, ref, what) / max(1e-30, float(ref.abs().max()))


@check(points=1)
def test_shape(logit_lens):
    """shape: (..., C), (C,), (V, C) -> (..., V)"""
    for seed, lead, c, v in [(15601, (3, 2, 5), 8, 11), (15602, (), 4, 3), (15603, (1, 1, 2, 1), 6, 9), (15604, (7,), 1, 2)]:
        resid, weight, unembed = _case(seed, lead, c, v)
        expect_tensor(logit_lens(resid, weight, unembed), f"the logits for resid {tuple(resid.shape)} and unembed "
                      f"{tuple(unembed.shape)}", (*lead, v))


@check(points=1)
def test_values(logit_lens):
    """values: RMSNorm then the unembedding"""
    for seed, lead, c, v in [(15701, (2, 3, 4), 16, 10), (15702, (5,), 32, 7)]:
        resid, weight, unembed = _case(seed, lead, c, v, unit_weight=True)
        error = _relative(logit_lens(resid, weight, unembed), _reference(resid, weight, unembed), "the logits")
        assert error < 1e-4, (
            f"the logits must be (x / sqrt(mean(x^2) + eps) * g) @ unembed.T for resid {tuple(resid.shape)} and "
            f"unembed {tuple(unembed.shape)}: relative error {error:.3g}"
        )


@check(points=1)
def test_rms_and_weight(logit_lens):
    """RMS (no mean subtracted) and the norm's weight g"""
    for seed, lead, c, v in [(15801, (3, 4), 12, 9), (15802, (2,), 24, 5)]:
        resid, weight, unembed = _case(seed, lead, c, v, scale=1.0, offset=3.0)
        error = _relative(logit_lens(resid, weight, unembed), _reference(resid, weight, unembed), "the logits")
        assert error < 1e-4, (
            f"on residual vectors with a mean far from 0 and a norm weight g that is not all ones, the logits are "
            f"wrong (relative error {error:.3g}): RMSNorm divides x by sqrt(mean(x^2) + eps) without subtracting "
            "the mean (that is LayerNorm), then multiplies by g"
        )


@check(points=1)
def test_eps(logit_lens):
    """eps inside the square root, default 1e-5 and a given eps"""
    for seed, eps in [(15901, None), (15902, 1e-3), (15903, 0.5)]:
        resid, weight, unembed = _case(seed, (4, 3), 8, 6, scale=1e-3)
        got = logit_lens(resid, weight, unembed) if eps is None else logit_lens(resid, weight, unembed, eps=eps)
        reference = _reference(resid, weight, unembed, 1e-5 if eps is None else eps)
        error = _relative(got, reference, "the logits")
        assert error < 1e-4, (
            f"on tiny residual vectors (entries about 1e-3) with eps={'the default' if eps is None else eps} the "
            f"logits are wrong (relative error {error:.3g}): eps is added to mean(x^2) inside the square root, "
            "sqrt(mean(x^2) + eps), and its default is 1e-5"
        )
