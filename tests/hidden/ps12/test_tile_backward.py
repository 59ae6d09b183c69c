"""Hidden checks for ps12 `tile_backward(q, k, v, out, dout, lse, scale=None) -> (dq, dk, dv)`, the contribution
of one (query block, key block) tile to the gradients, against the gradient of the full attention computed here
by autograd (float64) and the tile's part of the closed-form backward.

One property per check: dV (P_tile^T dO with P recomputed from the row's saved lse); dQ; dK (both need
D = rowsum(dO * O) of the whole row and the scale); the tiles' contributions summed over a random tiling equal the
full gradients (default scale 1 / sqrt(d)).
"""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, largest


def _setup(seed, lead, t_q, t_k, d, dv, scale):
    """Full q, k, v, out, dout, lse and the full P, dS (float64)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, t_q, d, generator=g, dtype=torch.float64)
    k = torch.randn(*lead, t_k, d, generator=g, dtype=torch.float64)
    v = torch.randn(*lead, t_k, dv, generator=g, dtype=torch.float64)
    dout = torch.randn(*lead, t_q, dv, generator=g, dtype=torch.float64)
    s = q @ k.transpose(-2, -1) * scale
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1)
    out = p @ v
    dp = dout @ v.transpose(-2, -1)
    ds = p * (dp - (p * dp).sum(-1, keepdim=True))
    return q, k, v, out, dout, lse, p, ds


def _tile(fn, full, rows, cols, scale, pass_scale=True):
    q, k, v, out, dout, lse = full[:6]
    args = (q[..., rows, :], k[..., cols, :], v[..., cols, :], out[..., rows, :], dout[..., rows, :], lse[..., rows])
    result = fn(*args, scale=scale) if pass_scale else fn(*args)
    assert isinstance(result, tuple) and len(result) == 3, (
        f"tile_backward must return a tuple (dq, dk, dv); got {type(result).__name__}"
    )
    dq = expect_tensor(result[0], "dq", args[0].shape)
    dk = expect_tensor(result[1], "dk", args[1].shape)
    dv = expect_tensor(result[2], "dv", args[2].shape)
    return dq.double(), dk.double(), dv.double()


# tiles in the middle of the score matrix: their rows have keys outside the tile, so P_tile is not a softmax of the
# tile alone, and D needs the whole row
_CASES = [(12401, (2,), 12, 15, 4, 3, 0.5, slice(4, 8), slice(5, 10)),
          (12402, (1, 2), 9, 20, 6, 5, 0.3, slice(0, 5), slice(12, 20)),
          (12403, (), 7, 7, 3, 2, 1.2, slice(6, 7), slice(0, 3))]


@check(points=1)
def test_dv(tile_backward):
    """dV of a tile = P_tile^T dO, with P_tile = exp(S_tile - lse) (probabilities of the whole row)"""
    for seed, lead, t_q, t_k, d, dv_, scale, rows, cols in _CASES:
        full = _setup(seed, lead, t_q, t_k, d, dv_, scale)
        p = full[6]
        _, _, dv = _tile(tile_backward, full, rows, cols, scale)
        expected = p[..., rows, cols].transpose(-2, -1) @ full[4][..., rows, :]
        error = largest(dv - expected)
        assert error < 1e-10, (
            f"dv of the tile (rows {rows.start}:{rows.stop}, keys {cols.start}:{cols.stop}) is off by {error:.2g}: "
            "recompute P_tile = exp(Q_tile K_tile^T * scale - lse[:, None]) with the row's saved lse (not a softmax "
            "over the tile's keys), then dv = P_tile^T dO"
        )


@check(points=1)
def test_dq(tile_backward):
    """dQ of a tile = scale * dS_tile K_tile with dS = P * (dP - D), D = rowsum(dO * O)"""
    for seed, lead, t_q, t_k, d, dv_, scale, rows, cols in _CASES:
        full = _setup(seed, lead, t_q, t_k, d, dv_, scale)
        ds = full[7]
        dq, _, _ = _tile(tile_backward, full, rows, cols, scale)
        expected = scale * ds[..., rows, cols] @ full[1][..., cols, :]
        error = largest(dq - expected)
        assert error < 1e-10, (
            f"dq of the tile is off by {error:.2g} (scale = {scale}): dS = P_tile * (dO V_tile^T - D[:, None]) with "
            "D = rowsum(dO * O) over the whole output row, then dq = scale * dS @ K_tile"
        )


@check(points=1)
def test_dk(tile_backward):
    """dK of a tile = scale * dS_tile^T Q_tile"""
    for seed, lead, t_q, t_k, d, dv_, scale, rows, cols in _CASES:
        full = _setup(seed, lead, t_q, t_k, d, dv_, scale)
        ds = full[7]
        _, dk, _ = _tile(tile_backward, full, rows, cols, scale)
        expected = scale * ds[..., rows, cols].transpose(-2, -1) @ full[0][..., rows, :]
        error = largest(dk - expected)
        assert error < 1e-10, (
            f"dk of the tile is off by {error:.2g} (scale = {scale}): dk = scale * dS^T @ Q_tile, with "
            "dS = P_tile * (dP_tile - D[:, None]) and D = rowsum(dO * O)"
        )


@check(points=1)
def test_sum_of_tiles(tile_backward):
    """summed over a tiling, with the default scale, the tiles give the full gradients of attention"""
    g = torch.Generator().manual_seed(12410)
    q, k, v = (torch.randn(2, n, 4, generator=g, dtype=torch.float64, requires_grad=True) for n in (10, 13, 13))
    out = torch.softmax(q @ k.transpose(-2, -1) / 2, dim=-1) @ v
    dout = torch.randn(out.shape, generator=g, dtype=torch.float64)
    expected = torch.autograd.grad(out, (q, k, v), dout)
    q, k, v, out = q.detach(), k.detach(), v.detach(), out.detach()
    lse = torch.logsumexp(q @ k.transpose(-2, -1) / 2, dim=-1)
    full = (q, k, v, out, dout, lse)
    total = [torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)]
    for r0 in range(0, 10, 4):
        for c0 in range(0, 13, 5):
            rows, cols = slice(r0, min(r0 + 4, 10)), slice(c0, min(c0 + 5, 13))
            dq, dk, dv = _tile(tile_backward, full, rows, cols, None, pass_scale=False)
            total[0][..., rows, :] += dq
            total[1][..., cols, :] += dk
            total[2][..., cols, :] += dv
    for name, ours, theirs in zip(("dq", "dk", "dv"), total, expected):
        error = largest(ours - theirs)
        assert error < 1e-10, (
            f"summed over all tiles (4 x 5) with the default scale, {name} is off by {error:.2g} from the gradient "
            "of softmax(Q K^T / sqrt(d)) V: the default scale is 1 / sqrt(d)"
        )
