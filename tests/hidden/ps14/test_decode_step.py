"""Hidden checks for ps14 `decode_step(q, k_cache, v_cache, k_new, v_new)`: one decode step against a KV cache,
compared with softmax attention over the concatenated keys and values written out here in float64."""

import math

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor, max_error


def _inputs(seed, b, h, s, d):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    return r(b, h, 1, d), r(b, h, s, d), r(b, h, s, d), r(b, h, 1, d), r(b, h, 1, d)


def _call(decode_step, *args):
    result = decode_step(*args)
    assert isinstance(result, (tuple, list)) and len(result) == 3, (
        f"decode_step must return a tuple (y, k_cache_new, v_cache_new); got {type(result).__name__}"
    )
    return result


def _reference(q, kc, vc, kn, vn):
    k = torch.cat([kc, kn], dim=-2).double()
    v = torch.cat([vc, vn], dim=-2).double()
    w = torch.softmax(q.double() @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v, k, v


CASES = [(1401, 2, 3, 5, 4), (1402, 1, 1, 1, 8), (1403, 3, 2, 9, 16), (1404, 1, 4, 12, 2)]


@check(points=1)
def test_cache_append(decode_step):
    """the returned caches: shape (B, H, S+1, D), the old entries first, the new key and value last"""
    for seed, b, h, s, d in CASES:
        args = _inputs(seed, b, h, s, d)
        _, kc, vc = _call(decode_step, *args)
        _, k_ref, v_ref = _reference(*args)
        for name, got, ref in (("k_cache_new", kc, k_ref), ("v_cache_new", vc, v_ref)):
            expect_tensor(got, name, (b, h, s + 1, d))
            err = max_error(got, ref, name)
            assert err < 1e-6, (
                f"{name} for a cache of S={s} tokens must be the old cache followed by the new entry along the "
                f"time dim (dim -2); differs by up to {err:.2g}"
            )


@check(points=1)
def test_output(decode_step):
    """y matches softmax(q K^T / sqrt(D)) V over the cached keys and the new one"""
    for seed, b, h, s, d in CASES:
        args = _inputs(seed + 10, b, h, s, d)
        y, _, _ = _call(decode_step, *args)
        ref, _, _ = _reference(*args)
        err = max_error(y, ref, "y")
        assert err < 1e-5, (
            f"y for B={b}, H={h}, S={s}, D={d} differs from attention over all S+1 keys by up to {err:.2g}: scale the "
            f"scores by 1/sqrt(D), softmax over the keys, and include the new token's key and value"
        )


@check(points=1)
def test_own_token(decode_step):
    """the new token attends to itself (empty cache: y is its own value)"""
    for seed, b, h, d in [(1411, 2, 2, 4), (1412, 1, 3, 1)]:
        q, _, _, kn, vn = _inputs(seed, b, h, 0, d)
        empty = torch.zeros(b, h, 0, d)
        y, kc, _ = _call(decode_step, q, empty, empty.clone(), kn, vn)
        expect_tensor(kc, "k_cache_new", (b, h, 1, d))
        err = max_error(y, vn, "y")
        assert err < 1e-6, (
            f"with an empty cache (S=0) the only key is the new token's own, so y must equal v_new; off by {err:.2g}"
        )
    # one cached key identical to the new one, values different: weights must be 1/2 each
    g = torch.Generator().manual_seed(1413)
    q, k = torch.randn(1, 2, 1, 6, generator=g), torch.randn(1, 2, 1, 6, generator=g)
    v_old, v_new = torch.randn(1, 2, 1, 6, generator=g), torch.randn(1, 2, 1, 6, generator=g)
    y, _, _ = _call(decode_step, q, k, v_old, k.clone(), v_new)
    err = max_error(y, (v_old + v_new) / 2, "y")
    assert err < 1e-5, (
        f"a cached key equal to the new key gets the same weight as the new token itself (1/2 each); y is off by {err:.2g}"
    )
