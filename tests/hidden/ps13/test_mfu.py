"""Hidden checks for ps13 `mfu(step_times, tokens_per_step, flops_per_token, peak_flops, skip=1) -> float`, against
the closed form written out here: tokens/s = tokens_per_step / median(step_times[skip:]), and
MFU = tokens/s x flops_per_token / peak_flops.

One property per check: the formula on steady steps; the first `skip` steps (compilation, warm-up) left out, the
default skip=1 included; the median, not the mean (one slow step must not move it); a Python float.
"""

import random
import statistics

from mastering_transformers.grading import check


def _reference(step_times, tokens_per_step, flops_per_token, peak_flops, skip=1):
    return tokens_per_step / statistics.median(step_times[skip:]) * flops_per_token / peak_flops


def _value(mfu, *args, **kwargs) -> float:
    out = mfu(*args, **kwargs)
    try:
        return float(out)
    except (TypeError, ValueError):
        raise AssertionError(f"mfu must return a number; got {type(out).__name__}") from None


def _close(a, b):
    return abs(a - b) <= 1e-9 * abs(b)


def _case(rng, n, jitter=0.0, first=1.0):
    base = rng.uniform(0.05, 2.0)
    times = [base * (1 + rng.uniform(-jitter, jitter)) for _ in range(n)]
    times[0] = base * first
    return times, rng.choice([8192, 524288, 16384]), rng.uniform(1e6, 1e9), rng.choice([312e12, 989.4e12, 1e11])


@check(points=1)
def test_formula(mfu):
    """tokens/s x FLOPs per token / peak, on steps of equal length"""
    rng = random.Random(13400)
    for _ in range(5):
        times, tok, fpt, peak = _case(rng, rng.randint(2, 9))
        got, expected = _value(mfu, times, tok, fpt, peak, skip=0), _reference(times, tok, fpt, peak, skip=0)
        assert _close(got, expected), (
            f"steps of {times[0]:.4f} s with {tok} tokens each, {fpt:.4g} FLOPs per token, peak {peak:.4g} FLOP/s: "
            f"MFU = {tok} / {times[0]:.4f} * {fpt:.4g} / {peak:.4g} = {expected:.6g}; got {got:.6g}"
        )


@check(points=1)
def test_skip_warmup(mfu):
    """the first `skip` steps are left out (default skip=1: the compiling step)"""
    rng = random.Random(13500)
    for skip in (1, 2, 3, None):
        n_skip = 1 if skip is None else skip
        base, d = rng.uniform(0.05, 2.0), rng.uniform(0.05, 0.3)
        steady = [base, base * (1 + d), base * (1 - d), base * (1 + d / 2), base * (1 - d / 2)]
        rng.shuffle(steady)  # symmetric around base: their mean and median are both base
        times = [base * rng.uniform(10, 40) for _ in range(n_skip)] + steady
        tok, fpt, peak = rng.choice([8192, 524288]), rng.uniform(1e6, 1e9), rng.choice([312e12, 989.4e12])
        args = (times, tok, fpt, peak) if skip is None else (times, tok, fpt, peak, skip)
        got, expected = _value(mfu, *args), _reference(*args)
        assert _close(got, expected), (
            f"step times {[round(t, 3) for t in times]}, skip={n_skip}{' (the default)' if skip is None else ''}: "
            f"the first steps compile and warm up; leave them out before taking the median. Expected "
            f"{expected:.6g}; got {got:.6g}"
        )


@check(points=1)
def test_median(mfu):
    """the median step time, so that one slow step does not move it"""
    rng = random.Random(13600)
    for n in (5, 6, 8):
        times, tok, fpt, peak = _case(rng, n, jitter=0.2)
        times[rng.randrange(n)] *= 25  # a hiccup: another process, a checkpoint save
        got, expected = _value(mfu, times, tok, fpt, peak, skip=0), _reference(times, tok, fpt, peak, skip=0)
        assert _close(got, expected), (
            f"step times {[round(t, 3) for t in times]} (skip=0): use the median of the steps, not their "
            f"mean, so that one slow step does not change the estimate; expected {expected:.6g}; got {got:.6g}"
        )


@check(points=1)
def test_returns_float(mfu):
    """returns a Python float"""
    out = mfu([3.0, 1.0, 1.0, 1.0], 1000, 1e6, 1e10)
    assert type(out) is float, f"mfu must return a Python float; got {type(out).__name__}"
    assert _close(out, 0.1), f"mfu([3, 1, 1, 1], 1000, 1e6, 1e10) = 1000 * 1e6 / 1e10 = 0.1; got {out}"
