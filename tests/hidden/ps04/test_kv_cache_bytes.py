"""Hidden checks for ps04 `kv_cache_bytes(n_layer, n_kv_head, d_head, seq_len, batch_size=1, bytes_per_number=2)`,
against the bytes of real key and value tensors of that size.

One property per check: one layer and one token (absolute), growth with layers and tokens, growth with the batch,
the defaults (batch_size=1, bytes_per_number=2).
"""

import numbers

import torch

from mastering_transformers.grading import check

_DTYPES = {2: torch.bfloat16, 4: torch.float32, 1: torch.int8}


def _actual(n_kv_head, d_head, bytes_per_number):
    """Bytes of the cached key and value of one token in one layer: (n_kv_head, D) each."""
    k = torch.empty(n_kv_head, d_head, dtype=_DTYPES[bytes_per_number])
    return 2 * k.numel() * k.element_size()


def _call(fn, *args):
    n = fn(*args)
    assert isinstance(n, numbers.Number) or hasattr(n, "item"), (
        f"kv_cache_bytes must return a number; got {type(n).__name__}"
    )
    return float(n)


def _base(kv_cache_bytes, n_kv_head, d_head, nbytes):
    one = _call(kv_cache_bytes, 1, n_kv_head, d_head, 1, 1, nbytes)
    assert one > 0, f"kv_cache_bytes(1, {n_kv_head}, {d_head}, 1, 1, {nbytes}) must be positive; got {one:g}"
    return one


@check(points=1)
def test_keys_and_values(kv_cache_bytes):
    """one layer, one token: a key and a value for every key/value head"""
    for n_kv_head, d_head, nbytes in [(8, 64, 2), (1, 128, 4), (3, 16, 1)]:
        n, expected = _call(kv_cache_bytes, 1, n_kv_head, d_head, 1, 1, nbytes), _actual(n_kv_head, d_head, nbytes)
        assert n == expected, (
            f"kv_cache_bytes(1, {n_kv_head}, {d_head}, 1, 1, {nbytes}) must be {expected}; got {n:g}: a token "
            f"stores a key AND a value of d_head numbers for each of the n_kv_head heads, {nbytes} bytes a number"
        )


@check(points=1)
def test_layers_and_tokens(kv_cache_bytes):
    """proportional to the number of layers times the sequence length"""
    for n_layer, n_kv_head, d_head, seq_len, nbytes in [(12, 4, 32, 100, 2), (3, 2, 8, 7, 4)]:
        one = _base(kv_cache_bytes, n_kv_head, d_head, nbytes)
        n = _call(kv_cache_bytes, n_layer, n_kv_head, d_head, seq_len, 1, nbytes)
        assert n == n_layer * seq_len * one, (
            f"with {n_layer} layers and {seq_len} tokens the cache must be {n_layer} x {seq_len} times that of one "
            f"layer and one token ({one:g} bytes), {n_layer * seq_len * one:g}; got {n:g}: every layer caches "
            f"every token"
        )


@check(points=1)
def test_batch(kv_cache_bytes):
    """proportional to the batch size"""
    for n_layer, n_kv_head, d_head, seq_len, batch, nbytes in [(2, 4, 16, 10, 8, 2), (1, 1, 4, 3, 5, 4)]:
        single = _call(kv_cache_bytes, n_layer, n_kv_head, d_head, seq_len, 1, nbytes)
        n = _call(kv_cache_bytes, n_layer, n_kv_head, d_head, seq_len, batch, nbytes)
        assert single > 0 and n == batch * single, (
            f"with batch_size={batch} the cache must be {batch} times that of one sequence ({single:g} bytes); "
            f"got {n:g}: every sequence of the batch has its own keys and values"
        )


@check(points=1)
def test_defaults(kv_cache_bytes):
    """defaults: batch_size=1 and bytes_per_number=2 (bfloat16)"""
    for n_layer, n_kv_head, d_head, seq_len in [(2, 4, 16, 10), (6, 1, 8, 3)]:
        n = _call(kv_cache_bytes, n_layer, n_kv_head, d_head, seq_len)
        explicit = _call(kv_cache_bytes, n_layer, n_kv_head, d_head, seq_len, 1, 2)  # your function, all given
        assert n == explicit, (
            f"kv_cache_bytes({n_layer}, {n_kv_head}, {d_head}, {seq_len}) must use the defaults batch_size=1 and "
            f"bytes_per_number=2, as kv_cache_bytes({n_layer}, {n_kv_head}, {d_head}, {seq_len}, 1, 2) = "
            f"{explicit:g} does; got {n:g}"
        )
