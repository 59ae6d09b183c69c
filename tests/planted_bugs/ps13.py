"""Planted realistic bugs in ps13_gpu_training: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    # -- flops_per_token ----------------------------------------------------------------------------------------
    "bug_flops_no_attention_term": ("flops_per_token", """
def flops_per_token(n_layer, n_embd, n_head, vocab_size, seq_len, n_kv_head=None, d_ff=None, mlp="gelu",
                    training=True):
    kv = (n_head if n_kv_head is None else n_kv_head) * (n_embd // n_head)
    hidden = 4 * n_embd if d_ff is None else d_ff
    n = n_layer * (2 * n_embd * n_embd + 2 * n_embd * kv + (3 if mlp == "swiglu" else 2) * n_embd * hidden)
    n += vocab_size * n_embd
    return 6 * n if training else 2 * n  # "6N" alone
""", {"test_dense", "test_gqa", "test_swiglu", "test_forward_only", "test_defaults_and_int"}),
    "bug_flops_gqa_ignored": ("flops_per_token", """
def flops_per_token(n_layer, n_embd, n_head, vocab_size, seq_len, n_kv_head=None, d_ff=None, mlp="gelu",
                    training=True):
    hidden = 4 * n_embd if d_ff is None else d_ff
    n = n_layer * (4 * n_embd * n_embd + (3 if mlp == "swiglu" else 2) * n_embd * hidden) + vocab_size * n_embd
    forward = 2 * n + 4 * n_layer * seq_len * n_embd
    return 3 * forward if training else forward
""", {"test_gqa", "test_swiglu"}),
    "bug_flops_swiglu_two_matrices": ("flops_per_token", """
def flops_per_token(n_layer, n_embd, n_head, vocab_size, seq_len, n_kv_head=None, d_ff=None, mlp="gelu",
                    training=True):
    kv = (n_head if n_kv_head is None else n_kv_head) * (n_embd // n_head)
    hidden = 4 * n_embd if d_ff is None else d_ff
    n = n_layer * (2 * n_embd * n_embd + 2 * n_embd * kv + 2 * n_embd * hidden) + vocab_size * n_embd
    forward = 2 * n + 4 * n_layer * seq_len * n_embd
    return 3 * forward if training else forward
""", {"test_swiglu"}),
    "bug_flops_backward_once": ("flops_per_token", """
def flops_per_token(n_layer, n_embd, n_head, vocab_size, seq_len, n_kv_head=None, d_ff=None, mlp="gelu",
                    training=True):
    kv = (n_head if n_kv_head is None else n_kv_head) * (n_embd // n_head)
    hidden = 4 * n_embd if d_ff is None else d_ff
    n = n_layer * (2 * n_embd * n_embd + 2 * n_embd * kv + (3 if mlp == "swiglu" else 2) * n_embd * hidden)
    n += vocab_size * n_embd
    forward = 2 * n + 4 * n_layer * seq_len * n_embd
    return 2 * forward if training else forward  # the backward costs as much as the forward (it costs twice)
""", {"test_dense", "test_gqa", "test_swiglu", "test_defaults_and_int"}),
    # -- mfu --------------------------------------------------------------------------------------------------------
    "bug_mfu_mean_not_median": ("mfu", """
def mfu(step_times, tokens_per_step, flops_per_token, peak_flops, skip=1):
    steady = list(step_times)[skip:]
    return float(tokens_per_step / (sum(steady) / len(steady)) * flops_per_token / peak_flops)
""", {"test_median"}),
    "bug_mfu_keeps_compile_step": ("mfu", """
def mfu(step_times, tokens_per_step, flops_per_token, peak_flops, skip=1):
    return float(tokens_per_step / statistics.median(step_times) * flops_per_token / peak_flops)
""", {"test_skip_warmup"}),
    # -- training_memory ----------------------------------------------------------------------------------------
    "bug_memory_one_adam_moment": ("training_memory", """
def training_memory(n_params, weight_bytes=4, grad_bytes=4, state_bytes=4, master_weights=False, world_size=1):
    per_rank = -(-n_params // world_size)
    out = {"weights": per_rank * weight_bytes, "grads": per_rank * grad_bytes,
           "optimizer": per_rank * (state_bytes + (4 if master_weights else 0))}
    out["total"] = out["weights"] + out["grads"] + out["optimizer"]
    return out
""", {"test_float32_adamw", "test_mixed_precision", "test_sharded"}),
    "bug_memory_no_master_copy": ("training_memory", """
def training_memory(n_params, weight_bytes=4, grad_bytes=4, state_bytes=4, master_weights=False, world_size=1):
    per_rank = -(-n_params // world_size)
    out = {"weights": per_rank * weight_bytes, "grads": per_rank * grad_bytes, "optimizer": per_rank * 2 * state_bytes}
    out["total"] = out["weights"] + out["grads"] + out["optimizer"]
    return out
""", {"test_mixed_precision", "test_sharded"}),
    "bug_memory_floor_division": ("training_memory", """
def training_memory(n_params, weight_bytes=4, grad_bytes=4, state_bytes=4, master_weights=False, world_size=1):
    per_rank = n_params // world_size
    out = {"weights": per_rank * weight_bytes, "grads": per_rank * grad_bytes,
           "optimizer": per_rank * (2 * state_bytes + (4 if master_weights else 0))}
    out["total"] = out["weights"] + out["grads"] + out["optimizer"]
    return out
""", {"test_sharded"}),
    # -- loss_scale_step ----------------------------------------------------------------------------------------
    "bug_scale_only_inf_skips": ("loss_scale_step", """
def loss_scale_step(params, scaled_grads, scale, good_steps, lr, growth_factor=2.0, backoff_factor=0.5,
                    growth_interval=2000):
    unscaled = [g.float() / scale for g in scaled_grads]
    if any(bool(torch.isinf(g).any()) for g in unscaled):
        return [p.clone() for p in params], float(scale * backoff_factor), 0, True
    new_params = [(p.float() - lr * g).to(p.dtype) for p, g in zip(params, unscaled)]
    good_steps += 1
    if good_steps >= growth_interval:
        return new_params, float(scale * growth_factor), 0, False
    return new_params, float(scale), int(good_steps), False
""", {"test_nan_skips"}),
    "bug_scale_not_unscaled": ("loss_scale_step", """
def loss_scale_step(params, scaled_grads, scale, good_steps, lr, growth_factor=2.0, backoff_factor=0.5,
                    growth_interval=2000):
    grads = [g.float() for g in scaled_grads]
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        return [p.clone() for p in params], float(scale * backoff_factor), 0, True
    new_params = [(p.float() - lr * g).to(p.dtype) for p, g in zip(params, grads)]
    good_steps += 1
    if good_steps >= growth_interval:
        return new_params, float(scale * growth_factor), 0, False
    return new_params, float(scale), int(good_steps), False
""", {"test_finite_step"}),
    "bug_scale_counter_not_reset": ("loss_scale_step", """
def loss_scale_step(params, scaled_grads, scale, good_steps, lr, growth_factor=2.0, backoff_factor=0.5,
                    growth_interval=2000):
    unscaled = [g.float() / scale for g in scaled_grads]
    if not all(bool(torch.isfinite(g).all()) for g in unscaled):
        return [p.clone() for p in params], float(scale * backoff_factor), int(good_steps), True
    new_params = [(p.float() - lr * g).to(p.dtype) for p, g in zip(params, unscaled)]
    good_steps += 1
    if good_steps >= growth_interval:
        return new_params, float(scale * growth_factor), 0, False
    return new_params, float(scale), int(good_steps), False
""", {"test_inf_skips", "test_nan_skips"}),
    "bug_scale_grows_one_step_late": ("loss_scale_step", """
def loss_scale_step(params, scaled_grads, scale, good_steps, lr, growth_factor=2.0, backoff_factor=0.5,
                    growth_interval=2000):
    unscaled = [g.float() / scale for g in scaled_grads]
    if not all(bool(torch.isfinite(g).all()) for g in unscaled):
        return [p.clone() for p in params], float(scale * backoff_factor), 0, True
    new_params = [(p.float() - lr * g).to(p.dtype) for p, g in zip(params, unscaled)]
    if good_steps >= growth_interval:
        return new_params, float(scale * growth_factor), 0, False
    return new_params, float(scale), int(good_steps + 1), False
""", {"test_growth"}),
    # -- all_reduce_mean ----------------------------------------------------------------------------------------
    "bug_allreduce_sum_not_mean": ("all_reduce_mean", """
def all_reduce_mean(rank_grads):
    totals = [sum(rank[k].to(torch.promote_types(rank[k].dtype, torch.float32)) for rank in rank_grads).to(rank_grads[0][k].dtype)
              for k in range(len(rank_grads[0]))]
    return [[t.clone() for t in totals] for _ in rank_grads]
""", {"test_mean_over_ranks", "test_global_batch", "test_float16_no_overflow"}),
    "bug_allreduce_half_precision_sum": ("all_reduce_mean", """
def all_reduce_mean(rank_grads):
    means = [sum(rank[k] for rank in rank_grads) / len(rank_grads) for k in range(len(rank_grads[0]))]
    return [[m.clone() for m in means] for _ in rank_grads]
""", {"test_float16_no_overflow"}),
}
