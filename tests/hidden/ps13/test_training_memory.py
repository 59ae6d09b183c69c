"""Hidden checks for ps13 `training_memory(n_params, weight_bytes=4, grad_bytes=4, state_bytes=4,
master_weights=False, world_size=1) -> dict`, against the closed form written out here: per parameter, a weight,
a gradient and AdamW's two moments (and a float32 master copy of the weight when the weights are 16-bit), each
rank holding ceil(n_params / world_size) parameters when the state is sharded over world_size ranks.

One property per check: float32 AdamW, 16 bytes per parameter (the defaults); 16-bit weights and gradients with
float32 master weights and moments; sharding over ranks (a rank holds the ceiling of its share); the result's
keys, int values and total.
"""

import math
import random

from mastering_transformers.grading import check

KEYS = {"weights", "grads", "optimizer", "total"}


def _reference(n, weight_bytes=4, grad_bytes=4, state_bytes=4, master_weights=False, world_size=1):
    per_rank = math.ceil(n / world_size)
    out = {"weights": per_rank * weight_bytes, "grads": per_rank * grad_bytes,
           "optimizer": per_rank * (2 * state_bytes + (4 if master_weights else 0))}
    out["total"] = sum(out.values())
    return out


def _call(training_memory, *args, **kwargs) -> dict:
    out = training_memory(*args, **kwargs)
    assert isinstance(out, dict), f"training_memory must return a dict; got {type(out).__name__}"
    missing = KEYS - set(out)
    assert not missing, f"the dict needs the keys {sorted(KEYS)}; missing {sorted(missing)}"
    return out


def _compare(got, expected, call):
    for key in ("weights", "grads", "optimizer", "total"):
        assert got[key] == expected[key], f"{call}: {key} = {got[key]}; expected {expected[key]} bytes"


@check(points=1)
def test_float32_adamw(training_memory):
    """float32 AdamW: 4 (weight) + 4 (gradient) + 8 (two moments) bytes per parameter, the defaults"""
    rng = random.Random(13700)
    for n in [1, 7, 124_475_904, rng.randint(1000, 10**9)]:
        _compare(_call(training_memory, n), _reference(n), f"training_memory({n})")
        _compare(_call(training_memory, n, 4, 4, 4), _reference(n), f"training_memory({n}, 4, 4, 4)")


@check(points=1)
def test_mixed_precision(training_memory):
    """16-bit weights and gradients, float32 master weights and moments"""
    rng = random.Random(13800)
    for n in [3, 124_475_904, rng.randint(10**5, 10**9)]:
        for grad_bytes in (2, 4):
            kw = dict(weight_bytes=2, grad_bytes=grad_bytes, state_bytes=4, master_weights=True)
            _compare(_call(training_memory, n, **kw), _reference(n, **kw),
                     f"training_memory({n}, {', '.join(f'{k}={v}' for k, v in kw.items())}) (the float32 master "
                     f"copy, 4 bytes per parameter, belongs to the optimizer)")
    kw = dict(weight_bytes=2, grad_bytes=2, state_bytes=2, master_weights=False)
    _compare(_call(training_memory, 1000, **kw), _reference(1000, **kw), "training_memory(1000, 2, 2, 2)")


@check(points=1)
def test_sharded(training_memory):
    """sharded over world_size ranks: each rank holds ceil(n_params / world_size) parameters' state"""
    rng = random.Random(13900)
    for n, w in [(10, 3), (124_475_904, 8), (5, 8), (rng.randint(10**6, 10**9), rng.choice([2, 3, 7, 64]))]:
        for master in (False, True):
            kw = dict(weight_bytes=2 if master else 4, master_weights=master, world_size=w)
            _compare(_call(training_memory, n, **kw), _reference(n, **kw),
                     f"training_memory({n}, world_size={w}, master_weights={master}) (a rank holds "
                     f"ceil({n} / {w}) = {math.ceil(n / w)} parameters: the last shard is padded, never dropped)")


@check(points=1)
def test_structure(training_memory):
    """a dict with weights, grads, optimizer and total, int values, total the sum of the other three"""
    out = _call(training_memory, 12345, weight_bytes=2, grad_bytes=2, master_weights=True, world_size=4)
    for key in KEYS:
        assert type(out[key]) is int, f"{key} must be a Python int (bytes); got {type(out[key]).__name__}"
    assert out["total"] == out["weights"] + out["grads"] + out["optimizer"], (
        f"total must be weights + grads + optimizer; got {out}"
    )
