"""Hidden checks for ps16 `fit_power_law(x, y) -> (a, b, se(b))`, against ordinary least squares on the logarithms
written here in matrix form: X = [1, log x], (X^T X)^-1 X^T log y, and the covariance s^2 (X^T X)^-1 with the
residual variance s^2 on n - 2 degrees of freedom.

One property per check: three Python floats; exact power laws (any sign of the exponent) give a and b back and a
zero error; noisy data give the least-squares line; the standard error of the exponent.
"""

import math

import torch

from mastering_transformers.grading import check


def _reference(x, y):
    X = torch.stack([torch.ones_like(x), x.log()], dim=1)
    v = y.log()
    xtx_inv = torch.linalg.inv(X.T @ X)
    coef = xtx_inv @ X.T @ v
    resid = v - X @ coef
    s2 = float(resid @ resid) / (len(x) - 2)
    return math.exp(float(coef[0])), float(coef[1]), math.sqrt(s2 * float(xtx_inv[1, 1]))


def _case(seed, n, noise):
    g = torch.Generator().manual_seed(seed)
    x = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * 8 - 1)
    a = math.exp(float(torch.randn((), generator=g, dtype=torch.float64)) * 2)
    b = float(torch.randn((), generator=g, dtype=torch.float64))
    y = a * x**b * torch.exp(noise * torch.randn(n, generator=g, dtype=torch.float64))
    return x, y, a, b


def _fit(fit_power_law, x, y):
    out = fit_power_law(x.clone(), y.clone())
    assert isinstance(out, (tuple, list)) and len(out) == 3, (
        f"fit_power_law must return a tuple (a, b, b_stderr); got {type(out).__name__} {out!r:.80}"
    )
    return out


def _close(value, expected, rel=1e-7, what="the value"):
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    assert ok and abs(value - expected) <= rel * max(1.0, abs(expected)), what


@check(points=1)
def test_returns_floats(fit_power_law):
    """returns three Python floats"""
    for seed, n in ((16000, 3), (16001, 9)):
        x, y, _, _ = _case(seed, n, 0.1)
        out = _fit(fit_power_law, x, y)
        assert all(type(v) is float for v in out), (
            f"return three Python floats (float(...) of a 0-dim tensor); got types {[type(v).__name__ for v in out]}"
        )


@check(points=1)
def test_exact_power_law(fit_power_law):
    """exact power laws: the coefficient and exponent come back, the error is 0"""
    for seed, n in ((16100, 3), (16101, 5), (16102, 12)):
        x, y, a, b = _case(seed, n, 0.0)
        got_a, got_b, got_se = (float(v) for v in _fit(fit_power_law, x, y))
        _close(got_b, b, 1e-7, f"y = {a:.4g} x^{b:.4g} exactly: the exponent must be {b:.6g}; got {got_b:.6g}")
        _close(got_a, a, 1e-7, f"y = {a:.4g} x^{b:.4g} exactly: the coefficient a (not log a, natural logs) must be "
               f"{a:.6g}; got {got_a:.6g}")
        assert abs(got_se) < 1e-6, f"points exactly on a power law leave no residual: the error must be 0; got {got_se:.3g}"


@check(points=1)
def test_least_squares(fit_power_law):
    """noisy data: the least-squares line of log y on log x"""
    for seed, n in ((16200, 4), (16201, 7), (16202, 20)):
        x, y, _, _ = _case(seed, n, 0.3)
        ref_a, ref_b, _ = _reference(x, y)
        got_a, got_b, _ = (float(v) for v in _fit(fit_power_law, x, y))
        _close(got_b, ref_b, 1e-7, f"the least-squares slope of log y on log x is {ref_b:.6g}; got {got_b:.6g} "
               f"(fit the logarithms, not y itself)")
        _close(got_a, ref_a, 1e-7, f"the coefficient exp(mean(log y) - b mean(log x)) is {ref_a:.6g}; got {got_a:.6g}")


@check(points=1)
def test_stderr(fit_power_law):
    """the standard error of the exponent (residual variance over n - 2)"""
    for seed, n in ((16300, 3), (16301, 6), (16302, 15)):
        x, y, _, _ = _case(seed, n, 0.5)
        _, _, ref_se = _reference(x, y)
        _, _, got_se = (float(v) for v in _fit(fit_power_law, x, y))
        _close(got_se, ref_se, 1e-7, f"with {n} points se(b) = sqrt(s^2 / sum (u - mean u)^2) with s^2 = sum r^2 / "
               f"(n - 2) is {ref_se:.6g}; got {got_se:.6g}")
