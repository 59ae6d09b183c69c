"""Scaling laws and compute budgets: power-law fits with their uncertainty, compute-optimal sizes (chapter 16).

A power law ``y = a x^b`` is a straight line in log space, ``log y = log a + b log x``, so ordinary least squares
on the logs fits it and gives the usual standard error of the slope. Hoffmann et al. (2022, "Chinchilla") model
the loss of a model with N parameters trained on D tokens as

    L(N, D) = E + A / N^alpha + B / D^beta

and a training run costs about C = 6 N D floating-point operations (2 per parameter per token forward, 4
backward). Minimising L at fixed C gives alpha A N^-alpha = beta B D^-beta, hence

    N_opt = G (C / 6)^(beta / (alpha + beta)),   D_opt = (C / 6)^(alpha / (alpha + beta)) / G,
    G = (alpha A / (beta B))^(1 / (alpha + beta)),

and a tokens-per-parameter ratio D_opt / N_opt that depends on C unless alpha = beta. Their fitted values
(``CHINCHILLA``) give about 20 tokens per parameter at the budgets they studied (``CHINCHILLA_TOKENS_PER_PARAM``),
numbers quoted here as published data, not measured by the course.

``attention_ffn_flops`` counts the multiply-adds of one block per token, split into the parts that grow with the
sequence length (attention scores) and the parts that do not (projections and the MLP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Hoffmann et al. (2022), approach 3 (their eq. 10): E, A, B, alpha, beta. Published data, not a course result.
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# Besiroglu et al. (2024, "Chinchilla scaling: a replication attempt") refitted approach 3 to Hoffmann et al.'s
# own data points; this refit agrees with approaches 1 and 2 (about 20 tokens per parameter), the published one
# gives several times more. Also published data.
CHINCHILLA_REFIT = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
CHINCHILLA_TOKENS_PER_PARAM = 20.0  # their compute-optimal rule of thumb (table 3: 70B parameters, 1.4T tokens)


def _as_1d(name: str, values) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    if t.numel() == 0 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers")
    return t


@dataclass(frozen=True)
class PowerLawFit:
    """``y ≈ coef * x ** exponent``, fitted in log space; ``exponent_stderr`` is the slope's standard error."""

    coef: float
    exponent: float
    exponent_stderr: float
    r2: float

    def __call__(self, x):
        return self.coef * torch.as_tensor(x, dtype=torch.float64) ** self.exponent


def fit_power_law(x, y) -> PowerLawFit:
    """Least squares of ``log y = log a + b log x``: (n,) x, (n,) y, all > 0 -> ``PowerLawFit(a, b, se(b), R^2)``.

    The standard error of the slope is sqrt(s^2 / sum (u_i - mean u)^2) with u = log x and s^2 the residual
    variance with n - 2 degrees of freedom (infinite for n = 2: two points fix a line but not its uncertainty).
    """
    xs, ys = _as_1d("x", x), _as_1d("y", y)
    if xs.shape != ys.shape or xs.numel() < 2:
        raise ValueError(f"x and y must have the same length >= 2; got {xs.numel()} and {ys.numel()}")
    if bool((xs <= 0).any()) or bool((ys <= 0).any()):
        raise ValueError("a power law is fitted in log space: every x and y must be > 0")
    u, v = xs.log(), ys.log()
    du = u - u.mean()
    sxx = float((du * du).sum())
    if sxx == 0.0:
        raise ValueError("x must take at least two different values")
    slope = float((du * (v - v.mean())).sum()) / sxx
    intercept = float(v.mean()) - slope * float(u.mean())
    resid = v - (intercept + slope * u)
    ssr = float((resid * resid).sum())
    sst = float(((v - v.mean()) ** 2).sum())
    n = xs.numel()
    stderr = math.sqrt(ssr / (n - 2) / sxx) if n > 2 else math.inf
    return PowerLawFit(math.exp(intercept), slope, stderr, 1.0 - ssr / sst if sst > 0 else 1.0)


def loss_surface(n_params, n_tokens, params: dict) -> torch.Tensor:
    """Chinchilla's L(N, D) = E + A N^-alpha + B D^-beta, elementwise over broadcastable N and D."""
    n = torch.as_tensor(n_params, dtype=torch.float64)
    d = torch.as_tensor(n_tokens, dtype=torch.float64)
    return params["E"] + params["A"] * n ** -params["alpha"] + params["B"] * d ** -params["beta"]


def fit_loss_surface(
    n_params, n_tokens, loss, delta: float = 1e-3, steps: int = 200, init: dict | None = None
) -> dict:
    """Fit L(N, D) = E + A N^-alpha + B D^-beta to measured (N, D, L) triples, as Hoffmann et al. do.

    The fit minimises the Huber loss (``delta``) of log L - log L_hat, with log L_hat = logsumexp(a - alpha
    log N, b - beta log D, e) (so A = exp a, B = exp b, E = exp e stay positive), by L-BFGS from a small grid
    of starting points, keeping the best (``init``, e.g. an earlier fit, replaces the grid by that one start,
    as a bootstrap does). Returns a dict with E, A, B, alpha, beta and the objective.
    """
    n, d, y = _as_1d("n_params", n_params), _as_1d("n_tokens", n_tokens), _as_1d("loss", loss)
    if not n.shape == d.shape == y.shape or n.numel() < 5:
        raise ValueError("n_params, n_tokens and loss must have the same length >= 5 (five parameters are fitted)")
    if bool((n <= 0).any()) or bool((d <= 0).any()) or bool((y <= 0).any()):
        raise ValueError("n_params, n_tokens and loss must all be > 0")
    ln, ld, ly = n.log(), d.log(), y.log()
    e_max = float(y.min().log()) - 1e-3  # the irreducible loss lies below every measured loss

    def objective(p: torch.Tensor) -> torch.Tensor:
        a, b, e, alpha, beta = p
        pred = torch.logsumexp(torch.stack([a - alpha * ln, b - beta * ld, e.expand_as(ln)]), dim=0)
        return torch.nn.functional.huber_loss(pred, ly, delta=delta, reduction="sum")

    if init is not None:
        starts = [[math.log(init["A"]), math.log(init["B"]), math.log(init["E"]), init["alpha"], init["beta"]]]
    else:
        starts = [[2.0, 2.0, e_max - 0.5, alpha0, beta0] for alpha0 in (0.3, 0.8) for beta0 in (0.3, 0.8)]
    best = None
    for start in starts:
        p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([p], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = objective(p)
            value.backward()
            return value

        opt.step(closure)
        value = float(objective(p.detach()))
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, p.detach().clone())
    if best is None:
        raise RuntimeError("the loss-surface fit did not converge from any starting point")
    a, b, e, alpha, beta = best[1].tolist()
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": alpha, "beta": beta, "objective": best[0]}


def compute_optimal(compute: float, params: dict) -> tuple[float, float]:
    """(N_opt, D_opt) minimising ``loss_surface`` subject to 6 N D = ``compute`` (closed form, module docstring)."""
    if not compute > 0:
        raise ValueError(f"compute must be > 0 FLOPs; got {compute}")
    alpha, beta = params["alpha"], params["beta"]
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"alpha and beta must be > 0 for an optimum to exist; got {alpha}, {beta}")
    g = (alpha * params["A"] / (beta * params["B"])) ** (1.0 / (alpha + beta))
    n_opt = g * (compute / 6.0) ** (beta / (alpha + beta))
    return n_opt, compute / (6.0 * n_opt)


def chinchilla_budget(compute: float, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM) -> tuple[float, float]:
    """(N, D) with D = r N and 6 N D = ``compute``: N = sqrt(C / (6 r)), D = r N (the rule of thumb, r = 20)."""
    if not compute > 0 or not tokens_per_param > 0:
        raise ValueError(f"compute and tokens_per_param must be > 0; got {compute}, {tokens_per_param}")
    n = math.sqrt(compute / (6.0 * tokens_per_param))
    return n, tokens_per_param * n


def attention_ffn_flops(d_model: int, seq_len: int, d_ff: int | None = None, causal: bool = False) -> dict:
    """Forward FLOPs per token of one block (2 per multiply-add), split by where they are spent.

    ``qkvo``: the four C x C projections, 8 C^2; ``scores``: Q K^T and the weighted sum of V, 4 T C (each token
    meets T keys; ``causal`` halves it on average, (T + 1) / T * 2 T C); ``ffn``: two C x d_ff matrices, 4 C d_ff
    (16 C^2 at d_ff = 4 C). The scores overtake the MLP at T = d_ff (T = 4 C), and the whole FFN + projections at
    T = 6 C, for the standard MLP. Softmax, norms and activations (O(T) or O(C) per token) are left out.
    """
    for name, value in (("d_model", d_model), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    d_ff = 4 * d_model if d_ff is None else d_ff
    keys = (seq_len + 1) / 2 if causal else seq_len  # keys seen per query, averaged over positions
    return {"qkvo": 8 * d_model * d_model, "scores": 4 * keys * d_model, "ffn": 4 * d_model * d_ff}
