"""Planted realistic bugs in ps11_training: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    # -- cross_entropy ------------------------------------------------------------------------------------------
    "bug_ce_no_max_subtraction": ("cross_entropy", """
def cross_entropy(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    z, y = logits[keep], targets[keep]
    log_sum_exp = z.exp().sum(dim=-1).log()
    return (log_sum_exp - z.gather(-1, y[:, None]).squeeze(-1)).mean()
""", {"test_large_logits"}),
    "bug_ce_ignored_in_denominator": ("cross_entropy", """
def cross_entropy(logits, targets, ignore_index=-100):
    keep = targets != ignore_index
    safe = torch.where(keep, targets, torch.zeros_like(targets))
    m = logits.amax(dim=-1, keepdim=True).detach()
    log_sum_exp = m.squeeze(-1) + (logits - m).exp().sum(dim=-1).log()
    losses = (log_sum_exp - logits.gather(-1, safe[:, None]).squeeze(-1)) * keep
    return losses.sum() / len(targets)
""", {"test_ignore_index"}),
    "bug_ce_ignore_index_hard_coded": ("cross_entropy", """
def cross_entropy(logits, targets, ignore_index=-100):
    keep = targets != -100
    z, y = logits[keep], targets[keep]
    m = z.amax(dim=-1, keepdim=True).detach()
    log_sum_exp = m.squeeze(-1) + (z - m).exp().sum(dim=-1).log()
    return (log_sum_exp - z.gather(-1, y[:, None]).squeeze(-1)).mean()
""", {"test_ignore_index"}),
    "bug_ce_loss_from_python_floats": ("cross_entropy", """
def cross_entropy(logits, targets, ignore_index=-100):
    total, count = 0.0, 0
    for row, y in zip(logits, targets.tolist()):
        if y == ignore_index:
            continue
        m = row.max().item()
        total += m + math.log(float((row - m).exp().sum())) - row[y].item()
        count += 1
    return torch.tensor(total / count if count else float("nan"), dtype=logits.dtype)
""", {"test_gradient"}),
    # -- adamw_step ---------------------------------------------------------------------------------------------
    "bug_adam_no_bias_correction": ("adamw_step", """
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    beta1, beta2 = betas
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    return param * (1 - lr * weight_decay) - lr * m / (v.sqrt() + eps), m, v
""", {"test_bias_correction", "test_eps", "test_matches_torch_adamw"}),
    "bug_adam_step_counted_from_zero": ("adamw_step", """
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    beta1, beta2 = betas
    t = step - 1  # steps counted from 0
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return param * (1 - lr * weight_decay) - lr * m_hat / (v_hat.sqrt() + eps), m, v
""", {"test_bias_correction", "test_eps", "test_matches_torch_adamw"}),
    "bug_adam_l2_instead_of_decoupled": ("adamw_step", """
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    beta1, beta2 = betas
    grad = grad + weight_decay * param  # L2 regularisation: Adam's weight_decay
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v
""", {"test_moments", "test_decoupled_weight_decay", "test_matches_torch_adamw"}),
    "bug_adam_decay_after_update": ("adamw_step", """
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    beta1, beta2 = betas
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
    updated = param - lr * m_hat / (v_hat.sqrt() + eps)
    return updated * (1 - lr * weight_decay), m, v
""", {"test_decoupled_weight_decay", "test_matches_torch_adamw"}),
    "bug_adam_eps_inside_sqrt": ("adamw_step", """
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    beta1, beta2 = betas
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
    return param * (1 - lr * weight_decay) - lr * m_hat / (v_hat + eps).sqrt(), m, v
""", {"test_eps", "test_matches_torch_adamw"}),
    "bug_adam_eps_before_bias_correction": ("adamw_step", """
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    beta1, beta2 = betas
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    denom = (v.sqrt() + eps) / math.sqrt(1 - beta2**step)
    return param * (1 - lr * weight_decay) - lr * (m / (1 - beta1**step)) / denom, m, v
""", {"test_eps", "test_matches_torch_adamw"}),
    # -- lr_at --------------------------------------------------------------------------------------------------
    "bug_lr_warmup_off_by_one": ("lr_at", """
def lr_at(step, max_lr, warmup_steps, decay_steps, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    if step >= decay_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
""", {"test_warmup"}),
    "bug_lr_cosine_one_step_late": ("lr_at", """
def lr_at(step, max_lr, warmup_steps, decay_steps, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step > decay_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / (decay_steps - warmup_steps + 1)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
""", {"test_cosine", "test_floor"}),
    "bug_lr_no_floor": ("lr_at", """
def lr_at(step, max_lr, warmup_steps, decay_steps, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
""", {"test_floor"}),
    "bug_lr_returns_tensor": ("lr_at", """
def lr_at(step, max_lr, warmup_steps, decay_steps, min_lr=0.0):
    if step < warmup_steps:
        return torch.tensor(max_lr * (step + 1) / (warmup_steps + 1), dtype=torch.float64)
    if step >= decay_steps:
        return torch.tensor(min_lr, dtype=torch.float64)
    progress = torch.tensor((step - warmup_steps) / (decay_steps - warmup_steps), dtype=torch.float64)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + torch.cos(math.pi * progress))
""", {"test_returns_float"}),
    # -- clip_grad_norm -----------------------------------------------------------------------------------------
    "bug_clip_per_tensor": ("clip_grad_norm", """
def clip_grad_norm(grads, max_norm):
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
    clipped = []
    for g in grads:
        if g is None:
            clipped.append(None)
            continue
        norm = float(g.double().norm())
        clipped.append(g * (max_norm / (norm + 1e-6)) if norm > max_norm else g.clone())
    return clipped, total
""", {"test_clips_globally"}),
    "bug_clip_even_below_max_norm": ("clip_grad_norm", """
def clip_grad_norm(grads, max_norm):
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
    scale = max_norm / (total + 1e-6)
    return [None if g is None else g * scale for g in grads], total
""", {"test_below_max_unchanged"}),
    "bug_clip_none_crashes": ("clip_grad_norm", """
def clip_grad_norm(grads, max_norm):
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    scale = max_norm / (total + 1e-6) if total > max_norm else 1.0
    return [g * scale for g in grads], total
""", {"test_none_entries"}),
    "bug_clip_returns_norm_after_clipping": ("clip_grad_norm", """
def clip_grad_norm(grads, max_norm):
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
    if total > max_norm:
        grads = [None if g is None else g * (max_norm / (total + 1e-6)) for g in grads]
        total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
    return [None if g is None else g.clone() for g in grads], total
""", {"test_total_norm", "test_none_entries"}),
    # -- accumulate ---------------------------------------------------------------------------------------------
    "bug_accumulate_sum_not_mean": ("accumulate", """
def accumulate(micro_batch_grads, token_counts=None):
    if token_counts is None:
        return [sum(per_batch) for per_batch in zip(*micro_batch_grads)]
    return [sum(n * g for n, g in zip(token_counts, per_batch)) for per_batch in zip(*micro_batch_grads)]
""", {"test_equal_micro_batches", "test_token_counts"}),
    "bug_accumulate_ignores_token_counts": ("accumulate", """
def accumulate(micro_batch_grads, token_counts=None):
    k = len(micro_batch_grads)
    return [sum(per_batch) / k for per_batch in zip(*micro_batch_grads)]
""", {"test_token_counts"}),
    "bug_accumulate_counts_divided_by_k": ("accumulate", """
def accumulate(micro_batch_grads, token_counts=None):
    k = len(micro_batch_grads)
    counts = [1] * k if token_counts is None else token_counts
    return [sum(n * g for n, g in zip(counts, per_batch)) / k for per_batch in zip(*micro_batch_grads)]
""", {"test_token_counts"}),
}
