"""Hidden checks for ps10 `top_k_filter(logits, k)`: keep the k largest logits of every row (the last dim), set the
others to -inf, as `mt.top_k_filter` documents: exactly k entries stay (ties at the k-th value broken either way),
k >= V keeps everything. The reference here sorts each row in float64.

One property per check: the k largest of a row, ties, k >= V, and every row of a batch with its dtype kept.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


def _run(top_k_filter, logits, k) -> torch.Tensor:
    out = top_k_filter(logits, k)
    expect_tensor(out, f"top_k_filter on logits of shape {tuple(logits.shape)}", tuple(logits.shape))
    assert out.dtype == logits.dtype, f"top_k_filter must keep the dtype {logits.dtype}; got {out.dtype}"
    return out


def _assert_filtered_row(out: torch.Tensor, row: torch.Tensor, k: int, where: str) -> None:
    """out keeps exactly k entries of row, unchanged, none smaller than a dropped one; the others are -inf."""
    kept = torch.isfinite(out)
    assert bool((torch.isneginf(out) | kept).all()), (
        f"{where}: every dropped logit must be -inf (probability 0 after the softmax), not 0 or a large negative "
        f"number"
    )
    n = int(kept.sum())
    assert n == k, f"{where}: exactly k = {k} logits must stay; {n} stayed"
    assert torch.equal(out[kept], row[kept]), f"{where}: the kept logits must be unchanged"
    if n < row.numel():
        assert float(row[kept].min()) >= float(row[~kept].max()), (
            f"{where}: the kept logits must be the k largest: a dropped logit {float(row[~kept].max()):.4g} is "
            f"larger than a kept one {float(row[kept].min()):.4g}"
        )


@check(points=1)
def test_k_largest(top_k_filter):
    """one row (V,): exactly the k largest logits stay, unchanged; the others become -inf"""
    g = torch.Generator().manual_seed(14100)
    for v, k in [(10, 3), (7, 1), (25, 12), (5, 4), (40, 39)]:
        row = 3 * torch.randn(v, generator=g)  # distinct values
        out = _run(top_k_filter, row, k)
        expected = torch.zeros(v, dtype=torch.bool)
        expected[row.argsort(descending=True)[:k]] = True
        where = f"row of V = {v} logits, k = {k}"
        _assert_filtered_row(out, row, k, where)
        assert torch.equal(torch.isfinite(out), expected), f"{where}: the wrong logits were kept"


@check(points=1)
def test_ties(top_k_filter):
    """ties at the k-th largest value: still exactly k stay, none smaller than a dropped one"""
    g = torch.Generator().manual_seed(14200)
    rows = [torch.tensor([1.0, 3.0, 2.0, 3.0, 0.5, 3.0, 2.0]), torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0])]
    rows += [torch.randint(0, 4, (12,), generator=g).float() for _ in range(3)]
    for row, k in zip(rows, [2, 3, 4, 6, 9]):
        out = _run(top_k_filter, row, k)
        _assert_filtered_row(out, row, k, f"row {row.tolist()} with k = {k}")


@check(points=1)
def test_k_at_least_vocabulary(top_k_filter):
    """k >= V keeps every logit"""
    g = torch.Generator().manual_seed(14300)
    for shape, extra in [((6,), 0), ((6,), 5), ((3, 8), 0), ((2, 4), 100)]:
        logits = torch.randn(*shape, generator=g)
        k = shape[-1] + extra
        out = _run(top_k_filter, logits, k)
        assert torch.equal(out, logits), (
            f"with k = {k} >= V = {shape[-1]} every logit must stay, unchanged (torch.topk refuses k > V: "
            f"handle that case first)"
        )


@check(points=1)
def test_every_row(top_k_filter):
    """batches (B, V), (B, T, V), size-1 dims, float32 and float64: each row filtered on its own"""
    g = torch.Generator().manual_seed(14400)
    for shape, k, dtype in [((4, 10), 3, torch.float32), ((2, 3, 9), 2, torch.float64), ((1, 6), 1, torch.float32),
                            ((1, 1, 12), 5, torch.float64), ((3, 1, 5), 4, torch.float32)]:
        logits = (2 * torch.randn(*shape, generator=g)).to(dtype)
        out = _run(top_k_filter, logits, k)
        for index in torch.cartesian_prod(*[torch.arange(n) for n in shape[:-1]]).reshape(-1, len(shape) - 1):
            where = f"logits of shape {shape} ({dtype}), k = {k}, row {tuple(index.tolist())}"
            _assert_filtered_row(out[tuple(index)], logits[tuple(index)], k, where)
