"""The optimiser side of training, from scratch (chapter 11 derives each piece and checks it against PyTorch).

* ``AdamW``: Adam's running averages of the gradient and its square, bias-corrected, with the weight decay
  *decoupled* from the gradient (Loshchilov and Hutter, 2019)::

      m_t = beta1 m_{t-1} + (1 - beta1) g_t            v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
      theta_t = theta_{t-1} (1 - lr wd) - lr * (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps)

* ``lr_at``: the learning rate at a step: a linear warm-up to ``max_lr``, then a half cosine down to a floor
  ``min_lr``, then the floor (GPT-2/3, Chinchilla and nanoGPT all train with this shape).
* ``clip_grad_norm``: rescale all gradients together so that their global L2 norm is at most ``max_norm``.

The training loop in ``mt.train`` uses these (or PyTorch's fused AdamW, which computes the same update faster).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class AdamW(torch.optim.Optimizer):
    """AdamW written out step by step; a drop-in for ``torch.optim.AdamW`` (same arguments, same update).

    ``step()`` updates every parameter that has a gradient, per parameter group (so groups with and without
    weight decay work as in PyTorch). State per parameter: ``step`` (an int), ``exp_avg`` (m) and
    ``exp_avg_sq`` (v), the names PyTorch uses. ``state_dict()``/``load_state_dict()`` come from
    ``torch.optim.Optimizer`` and save these, so a run can be checkpointed and resumed.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0; got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must each be in [0, 1); got {betas}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0; got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        """One AdamW update of every parameter with a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t, m, v, g = state["step"], state["exp_avg"], state["exp_avg_sq"], p.grad
                p.mul_(1.0 - lr * wd)  # decoupled weight decay: shrink the weights, not the gradient
                m.lerp_(g, 1.0 - beta1)  # m = beta1 m + (1 - beta1) g
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)  # v = beta2 v + (1 - beta2) g^2
                # Both averages start at 0, so early on they underestimate; dividing by 1 - beta^t undoes that.
                bias1, bias2 = 1.0 - beta1**t, 1.0 - beta2**t
                denom = (v.sqrt() / math.sqrt(bias2)).add_(eps)
                p.addcdiv_(m, denom, value=-lr / bias1)
        return loss


def lr_at(step: int, max_lr: float, warmup_steps: int, decay_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate at optimiser step ``step`` (0-based): linear warm-up, cosine decay, then a floor.

        step <  W:           max_lr * (step + 1) / (W + 1)
        W <= step <= D:      min_lr + (max_lr - min_lr) * (1 + cos(pi * (step - W) / (D - W))) / 2
        step >  D:           min_lr

    with W = ``warmup_steps`` and D = ``decay_steps`` (the step at which the floor is reached). The warm-up
    rises in equal increments of max_lr / (W + 1) and never uses 0 (a step at lr 0 would be wasted); the
    line would reach ``max_lr`` at step W, exactly where the cosine starts, so the curve is continuous. It is
    halfway between ``max_lr`` and ``min_lr`` at step (W + D) / 2. ``warmup_steps=0`` starts at ``max_lr``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0; got {step}")
    if warmup_steps < 0 or decay_steps < warmup_steps:
        raise ValueError(f"need 0 <= warmup_steps <= decay_steps; got {warmup_steps} and {decay_steps}")
    if not 0.0 <= min_lr <= max_lr:
        raise ValueError(f"need 0 <= min_lr <= max_lr; got min_lr={min_lr}, max_lr={max_lr}")
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:  # also when decay_steps == warmup_steps: no cosine at all
        return min_lr
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)  # 0 -> 1
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_grad_norm(
    parameters: Iterable[torch.Tensor] | torch.Tensor, max_norm: float, eps: float = 1e-6
) -> torch.Tensor:
    """Scale all gradients by one factor so that their global L2 norm is at most ``max_norm``; returns the norm.

    The global norm is sqrt(sum over parameters of ||grad||^2), over the parameters that have a gradient
    (``grad is None`` are skipped). If it exceeds ``max_norm``, every gradient is multiplied by
    max_norm / (norm + eps): the direction of the update is kept, only its length is capped. Returns the
    norm *before* clipping (a 0-dim float32 tensor), which is worth logging: spikes in it precede loss spikes.
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive; got {max_norm}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.sqrt(sum((g.detach().float() ** 2).sum() for g in grads))
    scale = max_norm / (total + eps)
    if scale < 1.0:
        for g in grads:
            g.detach().mul_(scale.to(g.dtype))
    return total
