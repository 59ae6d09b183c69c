"""Hidden checks for ps14 `speculative_step(p, q, x, u, v)`: accept x if u < p(x)/q(x), else the inverse-CDF sample
of the residual max(p - q, 0) (normalised) with v; the output distribution, integrated over u and v on grids, is
compared with p in closed form."""

import torch

from mastering_transformers.grading import check


def _dists(seed, v_size, sharp=1.5):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(sharp * torch.randn(v_size, generator=g, dtype=torch.float64), 0)
    q = torch.softmax(sharp * torch.randn(v_size, generator=g, dtype=torch.float64), 0)
    return p, q


def _token(speculative_step, p, q, x, u, v):
    out = speculative_step(p, q, x, u, v)
    assert isinstance(out, int) and not isinstance(out, bool), f"speculative_step must return a Python int; got {type(out).__name__}"
    assert 0 <= out < len(p), f"the token must be in 0 .. V-1 = {len(p) - 1}; got {out}"
    return out


def _residual_token(p, q, v):
    r = torch.clamp(p - q, min=0)
    cdf = torch.cumsum(r / r.sum(), 0)
    return int((cdf > v).nonzero()[0])


@check(points=1)
def test_accept(speculative_step):
    """accepts the draft token exactly when u < p(x) / q(x)"""
    for seed, size in [(1461, 5), (1462, 9), (1463, 3)]:
        p, q = _dists(seed, size)
        for x in range(size):
            ratio = float(p[x] / q[x])
            for u in (0.999 * min(ratio, 1.0), 0.5 * min(ratio, 1.0), min(1.001 * ratio, 0.999999)):
                if u >= 1.0:
                    continue
                if u < ratio:
                    out = _token(speculative_step, p, q, x, u, 0.5)
                    assert out == x, (
                        f"draft token {x} with p(x)/q(x) = {ratio:.3f} and u = {u:.3f} must be accepted (u < p/q); "
                        f"got token {out}"
                    )
                else:  # rejected: whatever is resampled, it cannot be x for every v
                    outs = {_token(speculative_step, p, q, x, u, v) for v in (0.01, 0.99)}
                    assert outs != {x}, (
                        f"draft token {x} with p(x)/q(x) = {ratio:.3f} and u = {u:.3f} must be rejected (u >= p/q); "
                        f"it was returned as if accepted"
                    )


@check(points=1)
def test_reject_residual(speculative_step):
    """after a rejection, the inverse-CDF sample of max(p - q, 0), normalised, with v"""
    for seed, size in [(1471, 6), (1472, 4), (1473, 11)]:
        p, q = _dists(seed, size)
        x = int(torch.argmax(q / p))  # the token the draft over-proposes most: rejected for u close to 1
        u = 0.999999
        for v in (0.0, 0.13, 0.5, 0.77, 0.999):
            expected = _residual_token(p, q, v)
            out = _token(speculative_step, p, q, x, u, v)
            assert out == expected, (
                f"after rejecting token {x}, v = {v} must pick the smallest y with r(0) + ... + r(y) > v, where "
                f"r = max(p - q, 0) / sum(max(p - q, 0)): token {expected}; got {out}"
            )


@check(points=1)
def test_distribution(speculative_step):
    """the output, integrated over x ~ q, u and v, is distributed exactly as p"""
    # a rank-1 lattice rule over the unit square (u_i, v_i) = ((i + 1/2) / n, ((17 i mod n) + 1/2) / n): the output of
    # a correct function is constant on a few rectangles, whose areas these 50 points estimate to about 0.02
    n = 50
    points = [((i + 0.5) / n, ((17 * i) % n + 0.5) / n) for i in range(n)]
    p, q = _dists(1482, 4, sharp=1.0)
    out = torch.zeros(4, dtype=torch.float64)
    for x in range(4):
        for u, v in points:
            out[_token(speculative_step, p, q, x, u, v)] += q[x] / n
    err = float((out - p).abs().max())
    assert err < 0.05, (
        f"integrated over the draft token x ~ q and uniform u, v, the output distribution must equal the "
        f"target's p = {[round(float(t), 3) for t in p]}; got {[round(float(t), 3) for t in out]}"
    )
