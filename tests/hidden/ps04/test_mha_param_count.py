"""Hidden checks for ps04 `mha_param_count(d_model, n_head, bias=True, n_kv_head=None)`, against the
parameters of the four `nn.Linear` layers of such a layer, counted with `p.numel()`.

One property per check: without biases, with biases, fewer key/value heads (crossed with bias), invalid head
counts, the return type (an int, as the task says).
"""

import numbers

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_int


def _counted(d_model, n_head, bias, n_kv_head=None):
    n_kv_head = n_head if n_kv_head is None else n_kv_head
    d_head = d_model // n_head
    layers = [torch.nn.Linear(d_model, d_model, bias=bias), torch.nn.Linear(d_model, n_kv_head * d_head, bias=bias),
              torch.nn.Linear(d_model, n_kv_head * d_head, bias=bias), torch.nn.Linear(d_model, d_model, bias=bias)]
    return sum(p.numel() for layer in layers for p in layer.parameters())


def _call(fn, *args, **kwargs):
    n = fn(*args, **kwargs)
    assert isinstance(n, numbers.Number) or hasattr(n, "item"), (
        f"mha_param_count must return a number; got {type(n).__name__}"
    )
    return int(n)


@check(points=1)
def test_without_bias(mha_param_count):
    """bias=False: four d_model x d_model matrices, whatever n_head"""
    for d_model, n_head in [(24, 3), (64, 8), (10, 1)]:
        n, expected = _call(mha_param_count, d_model, n_head, bias=False), _counted(d_model, n_head, False)
        assert n == expected, (
            f"mha_param_count({d_model}, {n_head}, bias=False) must be {expected}; got {n}"
        )


@check(points=1)
def test_with_bias(mha_param_count):
    """bias=True: the four biases count too"""
    for d_model, n_head in [(24, 3), (96, 12), (10, 1)]:
        n, expected = _call(mha_param_count, d_model, n_head, bias=True), _counted(d_model, n_head, True)
        assert n == expected, (
            f"mha_param_count({d_model}, {n_head}, bias=True) must be {expected}; got {n}: each of the four "
            f"projections also has a bias vector, one number per output"
        )


@check(points=1)
def test_kv_heads(mha_param_count):
    """n_kv_head < n_head: k_proj and v_proj shrink to n_kv_head * D outputs"""
    for d_model, n_head, n_kv_head, bias in [(32, 8, 2, False), (48, 6, 1, False), (64, 8, 4, False),
                                             (32, 8, 2, True), (48, 6, 1, True), (24, 4, 4, True)]:
        n = _call(mha_param_count, d_model, n_head, bias=bias, n_kv_head=n_kv_head)
        expected = _counted(d_model, n_head, bias, n_kv_head)
        assert n == expected, (
            f"mha_param_count({d_model}, {n_head}, bias={bias}, n_kv_head={n_kv_head}) must be {expected}; "
            f"got {n}: W_K and W_V map d_model to n_kv_head * D features, with D = d_model // n_head (and with "
            f"biases, their biases have n_kv_head * D numbers, not d_model)"
        )


@check(points=1)
def test_rejects_bad_head_counts(mha_param_count):
    """ValueError when n_head does not divide d_model or n_kv_head does not divide n_head"""
    for args, kwargs, why in [((10, 3), {}, "n_head=3 does not divide d_model=10"),
                              ((12, 4), {"n_kv_head": 3}, "n_kv_head=3 does not divide n_head=4")]:
        try:
            mha_param_count(*args, **kwargs)
        except ValueError:
            continue
        except Exception as exc:  # the grader wraps what student code raises; a ValueError shows in the message
            if " raised ValueError" in str(exc):
                continue
            raise
        raise AssertionError(f"mha_param_count{args} with {kwargs or 'defaults'} must raise ValueError: {why}")


@check(points=1)
def test_returns_int(mha_param_count):
    """returns a Python int"""
    for args, kwargs in [((24, 3), {}), ((32, 8), {"bias": False, "n_kv_head": 2}), ((10, 1), {"bias": True})]:
        expect_int(mha_param_count(*args, **kwargs), f"mha_param_count{args} with {kwargs or 'defaults'}")
