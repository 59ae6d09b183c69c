"""Hidden checks for ps14 `expand_kv_heads(k, n_head)`: output head h is key/value head h // (n_head // H_kv),
compared with an explicit loop over the query heads written here."""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor

CASES = [(1451, 2, 2, 6, 5, 3), (1452, 1, 1, 4, 1, 2), (1453, 3, 4, 4, 2, 1), (1454, 2, 3, 12, 3, 4),
         (1455, 1, 2, 8, 1, 1)]


def _k(seed, b, h_kv, t, d):
    return torch.randn(b, h_kv, t, d, generator=torch.Generator().manual_seed(seed))


@check(points=1)
def test_shape(expand_kv_heads):
    """shape (B, n_head, T, D), size-1 dimensions included"""
    for seed, b, h_kv, n_head, t, d in CASES:
        out = expand_kv_heads(_k(seed, b, h_kv, t, d), n_head)
        expect_tensor(out, f"expand_kv_heads of shape {(b, h_kv, t, d)} with n_head={n_head}", (b, n_head, t, d))


@check(points=1)
def test_grouping(expand_kv_heads):
    """query head h gets key/value head h // (n_head / H_kv) (consecutive heads share)"""
    for seed, b, h_kv, n_head, t, d in CASES:
        k = _k(seed, b, h_kv, t, d)
        out = expand_kv_heads(k, n_head)
        expect_tensor(out, "the output", (b, n_head, t, d))
        group = n_head // h_kv
        for h in range(n_head):
            assert torch.equal(out[:, h], k[:, h // group]), (
                f"with H_kv={h_kv} and n_head={n_head}, output head {h} must be key/value head {h // group} "
                f"(groups of {group} consecutive query heads share one), not another head"
            )
