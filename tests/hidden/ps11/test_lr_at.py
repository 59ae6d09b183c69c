"""Hidden checks for ps11 `lr_at(step, max_lr, warmup_steps, decay_steps, min_lr=0.0) -> float`, against the closed
form of chapter 11 (and `mt.lr_at`) written out here, W = warmup_steps, D = decay_steps, s = step (from 0):

    s <  W:        max_lr (s + 1) / (W + 1)
    W <= s <= D:   min_lr + (max_lr - min_lr) (1 + cos(pi (s - W) / (D - W))) / 2
    s >  D:        min_lr            (and every s >= W when W == D)

One property per check: the warm-up; the cosine, ends included, with and without the default min_lr and with no
warm-up at all; the floor after D (also far after it, and when W == D); a Python float at every step.
"""

import math
import random

from mastering_transformers.grading import check


def _reference(step, max_lr, warmup_steps, decay_steps, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def _value(lr_at, *args, **kwargs) -> float:
    lr = lr_at(*args, **kwargs)
    try:
        return float(lr)
    except (TypeError, ValueError):
        raise AssertionError(f"lr_at must return a number; got {type(lr).__name__}") from None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(1.0, abs(b)) if math.isfinite(a) else False


def _schedules(seed: int, n: int):
    """(max_lr, W, D, min_lr) with 1 <= W < D and 0 < min_lr < max_lr."""
    rng = random.Random(seed)
    for _ in range(n):
        max_lr = rng.choice([1e-3, 6e-4, 3e-3, 0.1]) * rng.uniform(0.5, 2)
        w = rng.randint(1, 60)
        yield max_lr, w, w + rng.randint(2, 300), max_lr * rng.uniform(0.01, 0.3)


@check(points=1)
def test_warmup(lr_at):
    """linear warm-up: max_lr * (step + 1) / (warmup_steps + 1) for step < warmup_steps"""
    for max_lr, w, d, min_lr in [(1e-3, 1, 10, 1e-4), (2e-3, 4, 20, 0.0), *_schedules(12000, 6)]:
        rng = random.Random(w * 7 + d)
        for step in sorted({0, w - 1, w // 2, rng.randrange(w)}):
            lr = _value(lr_at, step, max_lr, w, d, min_lr)
            expected = _reference(step, max_lr, w, d, min_lr)
            assert _close(lr, expected), (
                f"lr_at({step}, max_lr={max_lr:.3g}, warmup_steps={w}, decay_steps={d}, min_lr={min_lr:.3g}) is in "
                f"the warm-up (step < {w}): max_lr * (step + 1) / (warmup_steps + 1) = {expected:.6g}; got {lr:.6g} "
                f"(step 0 gets max_lr / (W + 1), never 0, and the line would reach max_lr at step W)"
            )


@check(points=1)
def test_cosine(lr_at):
    """cosine from max_lr at warmup_steps to min_lr at decay_steps (default min_lr 0, no warm-up too)"""
    cases = [(1e-3, 10, 110, 1e-4), (3e-3, 0, 50, 3e-4), (0.1, 5, 6, 0.01), *_schedules(12100, 5)]
    for i, (max_lr, w, d, min_lr) in enumerate(cases):
        rng = random.Random(12150 + i)
        steps = {w, d, (w + d) // 2, d - 1, *(rng.randint(w, d) for _ in range(4))}
        for step in sorted(steps):
            for use_default in (False, True):
                args = (step, max_lr, w, d) if use_default else (step, max_lr, w, d, min_lr)
                lr = _value(lr_at, *args)
                expected = _reference(*args)
                floor = 0.0 if use_default else min_lr
                assert _close(lr, expected), (
                    f"lr_at({', '.join(f'{a:g}' for a in args)}) is on the cosine (warmup_steps={w} <= step <= "
                    f"decay_steps={d}): min_lr + (max_lr - min_lr) * (1 + cos(pi * (step - {w}) / ({d} - {w}))) / 2 = "
                    f"{expected:.6g} with min_lr={floor:g}{' (the default)' if use_default else ''}; got {lr:.6g} "
                    f"(max_lr exactly at step {w}, min_lr exactly at step {d})"
                )


@check(points=1)
def test_floor(lr_at):
    """min_lr after decay_steps, far after it too, and straight after the warm-up when warmup_steps == decay_steps"""
    for max_lr, w, d, min_lr in [(1e-3, 10, 100, 1e-4), (6e-4, 0, 30, 6e-5), *_schedules(12200, 4)]:
        for step in (d + 1, d + 2, 2 * d + 1, 10 * d + 7, d + 5 * (d - w)):
            lr = _value(lr_at, step, max_lr, w, d, min_lr)
            assert _close(lr, min_lr), (
                f"lr_at({step}, max_lr={max_lr:.3g}, warmup_steps={w}, decay_steps={d}, min_lr={min_lr:.3g}) is after "
                f"the decay ends: it must stay at min_lr = {min_lr:.6g}; got {lr:.6g} (the cosine must not go on and "
                f"rise again)"
            )
        lr = _value(lr_at, d + 3, max_lr, w, d)
        assert _close(lr, 0.0), (
            f"without min_lr (the default, 0.0) the rate after decay_steps={d} must be 0.0; lr_at({d + 3}, "
            f"{max_lr:.3g}, {w}, {d}) gave {lr:.6g}"
        )
    for max_lr, w, min_lr in [(1e-3, 5, 1e-4), (2e-3, 1, 0.0)]:
        for step in (w, w + 1, 3 * w + 4):
            lr = _value(lr_at, step, max_lr, w, w, min_lr)
            assert _close(lr, min_lr), (
                f"with warmup_steps == decay_steps == {w} there is no cosine: from step {w} on the rate is min_lr = "
                f"{min_lr:g} (check for step >= decay_steps before dividing by decay_steps - warmup_steps); "
                f"lr_at({step}, ...) gave {lr:.6g}"
            )


@check(points=1)
def test_returns_float(lr_at):
    """returns a Python float at every step (not a tensor, not an int)"""
    for args in [(0, 1e-3, 10, 100, 1e-4), (5, 1e-3, 10, 100, 1e-4), (10, 1e-3, 10, 100, 1e-4),
                 (57, 1e-3, 10, 100, 1e-4), (100, 1e-3, 10, 100, 1e-4), (150, 1e-3, 10, 100, 1e-4),
                 (0, 2e-3, 0, 40), (41, 2e-3, 0, 40)]:
        lr = lr_at(*args)
        assert type(lr) is float, (
            f"lr_at({', '.join(f'{a:g}' for a in args)}) must return a Python float (use math.cos, not torch.cos, "
            f"and return the number itself); got {type(lr).__name__}"
        )
