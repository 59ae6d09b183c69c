"""Hidden checks for ps12 `online_softmax_update(m, l, scores) -> (m_new, l_new)`, against the row's maximum and
sum of exp(s - max) computed here in float64 over all the scores seen so far.

One property per check: one block from the empty state (m = -inf, l = 0), with exact shapes including size-1 dims;
the running sum rescaled when later blocks raise the maximum (random splits); scores of about +-1000 (no overflow);
-inf entries and fully masked rows (m stays -inf, l stays 0, no nan).
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _state(lead, dtype=torch.float64):
    return torch.full(lead, float("-inf"), dtype=dtype), torch.zeros(lead, dtype=dtype)


def _fold(fn, x, cuts):
    """Run the student's update over x (..., n) split at `cuts`; return the final (m, l) as float64."""
    m, l = _state(x.shape[:-1], x.dtype)
    n = x.shape[-1]
    for lo, hi in zip([0, *cuts], [*cuts, n]):
        result = fn(m, l, x[..., lo:hi])
        assert isinstance(result, tuple) and len(result) == 2, (
            f"online_softmax_update must return a tuple (m_new, l_new); got {type(result).__name__}"
        )
        m = expect_tensor(result[0], "m_new", x.shape[:-1])
        l = expect_tensor(result[1], "l_new", x.shape[:-1])
    return m.double(), l.double()


def _reference(x):
    x = x.double()
    m = x.amax(dim=-1)
    shift = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    return m, torch.exp(x - shift[..., None]).sum(dim=-1)


def _relative(l, ref_l):
    return largest((l - ref_l) / ref_l.clamp_min(1e-300))


@check(points=1)
def test_first_block(online_softmax_update):
    """one block from the empty state: m = max, l = sum exp(s - max), exact shapes"""
    g = torch.Generator().manual_seed(12101)
    for lead, n, dtype in [((3,), 5, torch.float64), ((2, 1, 4), 7, torch.float32), ((1,), 1, torch.float64)]:
        x = (3 * torch.randn(*lead, n, generator=g, dtype=torch.float64)).to(dtype)
        m, l = _fold(online_softmax_update, x, [])
        ref_m, ref_l = _reference(x)
        assert largest(m - ref_m) < 1e-6, (
            f"from m = -inf, l = 0 one block of scores (shape {(*lead, n)}) must give m_new = the max over the last "
            f"dim; off by {largest(m - ref_m):.2g}"
        )
        assert _relative(l, ref_l) < 1e-5, (
            f"from m = -inf, l = 0 one block must give l_new = sum_j exp(s_j - m_new) (relative error "
            f"{_relative(l, ref_l):.2g}); start the sum from the new maximum"
        )


@check(points=1)
def test_rescaling(online_softmax_update):
    """over several blocks the old sum is rescaled by exp(m - m_new) when the max grows"""
    g = torch.Generator().manual_seed(12102)
    for trial in range(6):
        n = 20 + 7 * trial
        x = 4 * torch.randn(3, 2, n, generator=g, dtype=torch.float64)
        x[..., -3:] += 6.0  # the maximum arrives late: the early blocks' sums must shrink
        cuts = sorted(torch.randperm(n - 1, generator=g)[: 2 + trial].add(1).tolist())
        m, l = _fold(online_softmax_update, x, cuts)
        ref_m, ref_l = _reference(x)
        assert largest(m - ref_m) < 1e-9, (
            f"after {len(cuts) + 1} blocks m must be the max of every score seen; off by {largest(m - ref_m):.2g}"
        )
        assert _relative(l, ref_l) < 1e-9, (
            f"after {len(cuts) + 1} blocks l must equal sum_j exp(s_j - m) over all scores seen (relative error "
            f"{_relative(l, ref_l):.2g}): when a block raises the max from m to m_new, multiply the old l by "
            "exp(m - m_new) before adding the new block's terms"
        )


@check(points=1)
def test_large_scores(online_softmax_update):
    """scores of about +-1000 and blocks far apart: no inf or nan"""
    g = torch.Generator().manual_seed(12103)
    for centre in (1000.0, -1000.0):
        x = centre + 30 * torch.randn(4, 24, generator=g, dtype=torch.float64)
        for cuts in ([8, 16], [3, 4, 20]):
            m, l = _fold(online_softmax_update, x.float(), cuts)
            ref_m, ref_l = _reference(x.float())
            ok = torch.isfinite(l).all() and largest(m - ref_m) < 1e-3 and _relative(l, ref_l) < 1e-4
            assert ok, (
                f"for scores around {centre:g} (blocks split at {cuts}) m and l must stay finite and exact; "
                f"got l = {l.tolist()[:2]}...: exponentiate only s - m_new (never s itself, never s - old m)"
            )


@check(points=1)
def test_masked(online_softmax_update):
    """-inf scores add nothing; a row that has seen only -inf keeps m = -inf and l = 0"""
    g = torch.Generator().manual_seed(12104)
    x = 3 * torch.randn(5, 12, generator=g, dtype=torch.float64)
    x[0, ::2] = float("-inf")  # scattered masked entries
    x[1, :] = float("-inf")  # a row masked everywhere
    x[2, :6] = float("-inf")  # a row masked in its first block only
    x[3, 6:] = float("-inf")  # a row masked in its last block only
    m, l = _fold(online_softmax_update, x, [6])
    assert not torch.isnan(m).any() and not torch.isnan(l).any(), (
        f"with -inf scores m or l became nan (m = {m.tolist()}, l = {l.tolist()}): when m_new is -inf, "
        "-inf - (-inf) is nan; subtract 0 instead (nothing has been summed yet)"
    )
    assert math.isinf(m[1].item()) and m[1].item() < 0 and l[1].item() == 0, (
        f"a row whose scores are all -inf must keep m = -inf and l = 0; got m = {m[1].item()}, l = {l[1].item()}"
    )
    ref_m, ref_l = _reference(x)
    keep = torch.tensor([0, 2, 3, 4])
    assert largest(m[keep] - ref_m[keep]) < 1e-9 and _relative(l[keep], ref_l[keep]) < 1e-9, (
        "-inf scores must contribute exp(-inf) = 0 and the other rows' m and l must be exact; "
        f"got l = {l.tolist()}"
    )
