"""Hidden checks for ps12 `attention_tile(m, l, acc, scores, v) -> (m_new, l_new, acc_new)`, one tile of flash
attention's forward pass, against softmax(S) V and the rows' max and sum computed here in float64 from all the
scores of the row at once.

One property per check: one tile from the empty state (m = -inf, l = 0, acc = 0), exact shapes with leading dims;
the output acc / l after several tiles (acc rescaled by exp(m - m_new)); the running max and sum after several
tiles; masked scores (-inf), rows masked in a whole tile and rows masked everywhere (no nan; acc and l stay 0).
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _run(fn, s, v, cuts):
    """Fold tiles of s (..., bq, n) and v (..., n, dv) split at `cuts` with the student's attention_tile."""
    lead_q = s.shape[:-1]
    m = torch.full(lead_q, float("-inf"), dtype=s.dtype)
    l = torch.zeros(lead_q, dtype=s.dtype)
    acc = torch.zeros(*lead_q, v.shape[-1], dtype=s.dtype)
    n = s.shape[-1]
    for lo, hi in zip([0, *cuts], [*cuts, n]):
        result = fn(m, l, acc, s[..., lo:hi], v[..., lo:hi, :])
        assert isinstance(result, tuple) and len(result) == 3, (
            f"attention_tile must return a tuple (m_new, l_new, acc_new); got {type(result).__name__}"
        )
        m = expect_tensor(result[0], "m_new", lead_q)
        l = expect_tensor(result[1], "l_new", lead_q)
        acc = expect_tensor(result[2], "acc_new", acc.shape)
    return m.double(), l.double(), acc.double()


def _reference(s, v):
    s, v = s.double(), v.double()
    m = s.amax(dim=-1)
    shift = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    e = torch.exp(s - shift[..., None])
    return m, e.sum(-1), e @ v


def _case(seed, lead, bq, n, dv, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = 3 * torch.randn(*lead, bq, n, generator=g, dtype=torch.float64)
    v = torch.randn(*lead, n, dv, generator=g, dtype=torch.float64)
    return s.to(dtype), v.to(dtype)


@check(points=1)
def test_one_tile(attention_tile):
    """one tile from the empty state: m = row max, l = sum exp(s - m), acc = exp(s - m) @ v"""
    for seed, lead, bq, n, dv, dtype in [(12201, (2,), 3, 4, 5, torch.float64), (12202, (1, 2), 1, 6, 3, torch.float32),
                                         (12203, (), 4, 1, 2, torch.float64)]:
        s, v = _case(seed, lead, bq, n, dv, dtype)
        m, l, acc = _run(attention_tile, s, v, [])
        ref_m, ref_l, ref_acc = _reference(s, v)
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        assert largest(m - ref_m) < tol and largest(l - ref_l) < tol * 10, (
            f"from the empty state one tile (scores {tuple(s.shape)}) must give m_new = its row max and l_new = "
            f"sum_j exp(s_ij - m_new); off by {largest(m - ref_m):.2g} and {largest(l - ref_l):.2g}"
        )
        assert largest(acc - ref_acc) < tol * 10, (
            f"from the empty state acc_new must be exp(S - m_new) @ V (not yet divided by l), shape (..., bq, dv); "
            f"off by {largest(acc - ref_acc):.2g}"
        )


@check(points=2)
def test_output_over_tiles(attention_tile):
    """after several tiles acc / l equals softmax(S) V: acc is rescaled by exp(m - m_new)"""
    g = torch.Generator().manual_seed(12204)
    for trial in range(5):
        n = 12 + 5 * trial
        s, v = _case(12210 + trial, (2, 1), 4, n, 3)
        s[..., -2:] += 5.0  # a late maximum: earlier tiles must be rescaled
        cuts = sorted(torch.randperm(n - 1, generator=g)[: 2 + trial].add(1).tolist())
        m, l, acc = _run(attention_tile, s, v, cuts)
        expected = torch.softmax(s, dim=-1) @ v
        error = largest(acc / l[..., None] - expected)
        assert error < 1e-10, (
            f"after {len(cuts) + 1} tiles acc / l must be softmax(S) @ V; off by {error:.2g}: when a tile raises "
            "the max from m to m_new, multiply the old acc (like the old l) by exp(m - m_new) before adding "
            "exp(S_tile - m_new) @ V_tile"
        )


@check(points=1)
def test_statistics_over_tiles(attention_tile):
    """after several tiles m is the row max and l = sum exp(s - m) over every tile"""
    g = torch.Generator().manual_seed(12205)
    for trial in range(4):
        n = 10 + 6 * trial
        s, v = _case(12220 + trial, (3,), 5, n, 2)
        s[..., :2] -= 4.0
        s[..., -3:] += 4.0
        cuts = sorted(torch.randperm(n - 1, generator=g)[: 1 + trial].add(1).tolist())
        m, l, _ = _run(attention_tile, s, v, cuts)
        ref_m, ref_l, _ = _reference(s, v)
        assert largest(m - ref_m) < 1e-12, f"after several tiles m must be the row max; off by {largest(m - ref_m):.2g}"
        error = largest((l - ref_l) / ref_l)
        assert error < 1e-10, (
            f"after {len(cuts) + 1} tiles l must be sum_j exp(s_j - m) over every tile seen (relative error "
            f"{error:.2g}): rescale the old l by exp(m - m_new)"
        )


@check(points=1)
def test_masked_tiles(attention_tile):
    """-inf scores, rows masked in a whole tile or everywhere: no nan, masked rows keep l = 0, acc = 0"""
    s, v = _case(12230, (2,), 4, 9, 3)
    s[:, 0, 5:] = float("-inf")  # row 0: its second and third tiles are masked (like a causal diagonal)
    s[:, 1, :3] = float("-inf")  # row 1: masked in its first tile only
    s[:, 2, :] = float("-inf")  # row 2: masked everywhere
    s[:, 3, 1::2] = float("-inf")  # row 3: scattered
    m, l, acc = _run(attention_tile, s, v, [3, 6])
    assert not (torch.isnan(m).any() or torch.isnan(l).any() or torch.isnan(acc).any()), (
        "masked scores produced nan: when m_new is -inf (a row that has seen only -inf), -inf - (-inf) is nan; "
        "subtract 0 instead"
    )
    assert (l[:, 2] == 0).all() and (acc[:, 2] == 0).all(), (
        f"a row whose scores are all -inf must keep l = 0 and acc = 0; got l = {l[:, 2].tolist()}"
    )
    keep = [0, 1, 3]
    expected = torch.softmax(s[:, keep], dim=-1) @ v
    error = largest(acc[:, keep] / l[:, keep, None] - expected)
    assert error < 1e-10, f"with -inf scores the other rows' acc / l must still be softmax(S) @ V; off by {error:.2g}"
