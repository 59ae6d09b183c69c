"""Hidden checks for ps10 `top_p_filter(logits, p)`: keep, in every row, the smallest set of most likely tokens
whose probabilities (softmax of the row) sum to at least p, and set the others to -inf, as `mt.top_p_filter`
documents. The reference is a loop over each row's tokens in decreasing probability, in float64.

Random p are kept at least 1e-4 away from every partial sum of a row's sorted probabilities, so float32 rounding
cannot change the answer. One property per check: the nucleus of one row, the top token kept even when it
alone has more than p, p = 1, and every row of a batch (rows holding -inf, as top-k leaves them) with its dtype.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


def _nucleus(row: torch.Tensor, p: float) -> torch.Tensor:
    """Bool mask (V,) of the smallest set of most likely tokens whose probability sums to >= p."""
    probs = torch.softmax(row.double(), dim=-1)
    keep = torch.zeros(row.shape[-1], dtype=torch.bool)
    mass = 0.0
    for i in probs.argsort(descending=True).tolist():
        keep[i] = True
        mass += float(probs[i])
        if mass >= p:
            break
    return keep


def _safe_p(g: torch.Generator, rows: list[torch.Tensor], margin: float = 1e-4) -> float:
    """A p in (0.05, 0.98) at least ``margin`` away from every partial sum of the rows' sorted probabilities."""
    sums = [torch.softmax(r.double(), -1).sort(descending=True).values.cumsum(-1) for r in rows]
    while True:
        p = 0.05 + 0.93 * float(torch.rand((), generator=g, dtype=torch.float64))
        if all(float((s - p).abs().min()) > margin for s in sums):
            return p


def _run(top_p_filter, logits, p) -> torch.Tensor:
    out = top_p_filter(logits, p)
    expect_tensor(out, f"top_p_filter on logits of shape {tuple(logits.shape)}", tuple(logits.shape))
    assert out.dtype == logits.dtype, f"top_p_filter must keep the dtype {logits.dtype}; got {out.dtype}"
    return out


def _assert_row(out: torch.Tensor, row: torch.Tensor, expected: torch.Tensor, where: str) -> None:
    kept = torch.isfinite(out)
    assert bool((torch.isneginf(out) | kept).all()), f"{where}: every dropped logit must be -inf (no nan, no 0)"
    assert torch.equal(out[kept], row[kept]), f"{where}: the kept logits must be unchanged"
    if not torch.equal(kept, expected):
        probs = torch.softmax(row.double(), -1)
        assert False, (
            f"{where}: kept {int(kept.sum())} tokens with total probability {float(probs[kept].sum()):.4f}; the "
            f"nucleus has {int(expected.sum())} tokens with total {float(probs[expected].sum()):.4f}. Sort the "
            f"probabilities in decreasing order and keep a token while the mass of the tokens ranked above it is "
            f"< p (the token that carries the sum to p or beyond is kept), then put the mask back in vocabulary "
            f"order"
        )


@check(points=1)
def test_nucleus(top_p_filter):
    """one row (V,): keeps exactly the smallest set of most likely tokens whose mass reaches p"""
    g = torch.Generator().manual_seed(15100)
    for v, scale in [(10, 1.0), (30, 2.0), (6, 0.5), (50, 3.0), (12, 1.5)]:
        row = scale * torch.randn(v, generator=g)
        p = _safe_p(g, [row])
        out = _run(top_p_filter, row, p)
        _assert_row(out, row, _nucleus(row, p), f"row of V = {v} logits, p = {p:.4f}")


@check(points=1)
def test_top_token_always_kept(top_p_filter):
    """keeps the most likely token even when its probability alone exceeds p"""
    g = torch.Generator().manual_seed(15200)
    for v, position, p in [(8, 5, 0.3), (12, 11, 0.5), (5, 2, 0.05), (20, 7, 0.6)]:
        row = 0.3 * torch.randn(v, generator=g)
        row[position] = row.max() + 4.0  # one dominant token, not first in the vocabulary
        top_prob = float(torch.softmax(row.double(), -1)[position])
        assert top_prob > p + 1e-3  # the check's own premise
        out = _run(top_p_filter, row, p)
        expected = torch.zeros(v, dtype=torch.bool)
        expected[position] = True
        _assert_row(out, row, expected, f"row of V = {v} whose top token (index {position}) has probability "
                                        f"{top_prob:.3f} > p = {p}")


@check(points=1)
def test_p_one_keeps_everything(top_p_filter):
    """p = 1 keeps every token"""
    g = torch.Generator().manual_seed(15300)
    tail = torch.tensor([0.0, 0.0, -40.0, -40.0, -40.0, -40.0])  # the running sum reaches 1.0 before the tail
    rows = [tail[torch.randperm(6, generator=g)], tail.double()[torch.randperm(6, generator=g)],
            torch.randn(3, 10, generator=g)]
    for logits in rows:
        out = _run(top_p_filter, logits, 1.0)
        assert torch.equal(out, logits), (
            f"with p = 1 every token must stay (logits of shape {tuple(logits.shape)}, {logits.dtype}); "
            f"{int((~torch.isfinite(out)).sum())} were dropped. In floating point the running sum of the "
            f"probabilities can reach 1 before the last tokens: return a copy of the logits when p >= 1"
        )


@check(points=1)
def test_every_row(top_p_filter):
    """batches (B, V), (B, T, V), size-1 dims, rows with -inf, float32 and float64: each row its own nucleus"""
    g = torch.Generator().manual_seed(15400)
    for shape, dtype in [((4, 10), torch.float32), ((2, 3, 8), torch.float64), ((1, 7), torch.float32),
                         ((1, 1, 12), torch.float64), ((3, 1, 6), torch.float32)]:
        scales = 0.5 + 3 * torch.rand(*shape[:-1], 1, generator=g)  # sharp and flat rows side by side
        logits = (scales * torch.randn(*shape, generator=g)).to(dtype)
        if shape[-1] > 7:
            logits[..., -2:] = float("-inf")  # as left by top-k
        rows = logits.reshape(-1, shape[-1])
        p = _safe_p(g, list(rows))
        out = _run(top_p_filter, logits, p).reshape(-1, shape[-1])
        for i, row in enumerate(rows):
            _assert_row(out[i], row, _nucleus(row, p), f"logits of shape {shape} ({dtype}), p = {p:.4f}, row {i}")
