"""Hidden checks for ps16 `chinchilla_budget(compute, tokens_per_param=20.0) -> (N, D)`, against the closed form
N = sqrt(C / (6 r)), D = r N.

One property per check: the budget is spent exactly (6 N D = C) for any ratio; the default ratio is 20; another
ratio is honoured (D / N = r). Together the first and either of the others fix N = sqrt(C / (6 r)).
"""

import math
import random

from mastering_transformers.grading import check


def _budgets(seed):
    rng = random.Random(seed)
    return [10 ** rng.uniform(3, 25) for _ in range(5)]


def _call(chinchilla_budget, *args):
    out = chinchilla_budget(*args)
    assert isinstance(out, (tuple, list)) and len(out) == 2, (
        f"chinchilla_budget must return a tuple (n_params, n_tokens); got {type(out).__name__}"
    )
    n, d = (float(v) for v in out)
    assert n > 0 and d > 0 and math.isfinite(n) and math.isfinite(d), f"N and D must be positive numbers; got {out!r}"
    return n, d


@check(points=1)
def test_spends_the_budget(chinchilla_budget):
    """6 N D equals the compute budget"""
    rng = random.Random(16400)
    for c in _budgets(16401):
        r = rng.uniform(1, 100)
        n, d = _call(chinchilla_budget, c, r)
        assert abs(6 * n * d / c - 1) < 1e-9, (
            f"chinchilla_budget({c:.3g}, {r:.3g}): a run costs 6 N D FLOPs, which must equal the budget {c:.4g}; "
            f"got 6 N D = {6 * n * d:.4g}"
        )


@check(points=1)
def test_default_ratio(chinchilla_budget):
    """the default is 20 tokens per parameter"""
    for c in _budgets(16500):
        n, d = _call(chinchilla_budget, c)
        assert abs(d / n - 20) < 1e-9, (
            f"chinchilla_budget({c:.3g}) without tokens_per_param must use the default ratio D / N = 20; got "
            f"D / N = {d / n:.6g}"
        )


@check(points=1)
def test_other_ratio(chinchilla_budget):
    """another tokens_per_param is honoured"""
    rng = random.Random(16600)
    for c in _budgets(16601):
        r = rng.choice([1.0, 5.0, 40.0, 200.0]) * rng.uniform(0.5, 2)
        n, d = _call(chinchilla_budget, c, r)
        assert abs(d / n - r) < 1e-9 * r, (
            f"chinchilla_budget({c:.3g}, tokens_per_param={r:.4g}): D / N must be {r:.4g} (use the argument, not "
            f"20); got D / N = {d / n:.6g}"
        )
