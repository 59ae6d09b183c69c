"""Planted realistic bugs in ps05_normalisation: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_ln_wrong_axis": ("layer_norm", """
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-2, keepdim=True)
    var = x.var(dim=-2, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias
""", {"test_last_dim", "test_biased_variance", "test_matches_reference"}),
    "bug_ln_unbiased_variance": ("layer_norm", """
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias
""", {"test_biased_variance", "test_matches_reference"}),
    "bug_ln_no_eps": ("layer_norm", """
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / std * weight + bias
""", {"test_constant_tokens", "test_matches_reference"}),
    "bug_ln_no_bias": ("layer_norm", """
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return weight * (x - mean) / torch.sqrt(var + eps)
""", {"test_constant_tokens", "test_weight_and_bias", "test_matches_reference"}),
    "bug_rms_subtracts_mean": ("rms_norm", """
def rms_norm(x, weight, eps=1e-6):
    x = x - x.mean(dim=-1, keepdim=True)
    return x / torch.sqrt((x ** 2).mean(dim=-1, keepdim=True) + eps) * weight
""", {"test_no_centring", "test_matches_reference"}),
    "bug_rms_sum_not_mean": ("rms_norm", """
def rms_norm(x, weight, eps=1e-6):
    return x / torch.sqrt((x ** 2).sum(dim=-1, keepdim=True) + eps) * weight
""", {"test_unit_rms", "test_matches_reference"}),
    "bug_rms_no_eps": ("rms_norm", """
def rms_norm(x, weight, eps=1e-6):
    return x / torch.sqrt((x ** 2).mean(dim=-1, keepdim=True)) * weight
""", {"test_zero_tokens", "test_matches_reference"}),
    "bug_pre_ln_adds_normalised_x": ("pre_ln_block", """
def pre_ln_block(x, attn, mlp, norm1, norm2):
    h = norm1(x)
    x = h + attn(h)
    h = norm2(x)
    return h + mlp(h)
""", {"test_mlp_input", "test_residual_path", "test_matches_reference"}),
    "bug_pre_ln_parallel_sublayers": ("pre_ln_block", """
def pre_ln_block(x, attn, mlp, norm1, norm2):
    return x + attn(norm1(x)) + mlp(norm2(x))
""", {"test_mlp_input", "test_matches_reference"}),
    "bug_post_ln_no_final_norm": ("post_ln_block", """
def post_ln_block(x, attn, mlp, norm1, norm2):
    x = norm1(x + attn(x))
    return x + mlp(x)
""", {"test_output_normalised", "test_matches_reference"}),
}

# Bugs only the second edition's checks catch (issue 14): detached statistics, a changed default eps.
BUGS.update({
    "bug_ln_detached_statistics": ("layer_norm", """
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True).detach()
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True).detach()
    return (x - mean) / torch.sqrt(var + eps) * weight + bias
""", {"test_gradient"}),
    "bug_rms_default_eps": ("rms_norm", """
def rms_norm(x, weight, eps=1e-5):
    return x / torch.sqrt((x ** 2).mean(dim=-1, keepdim=True) + eps) * weight
""", {"test_default_eps"}),
    "bug_rms_detached_rms": ("rms_norm", """
def rms_norm(x, weight, eps=1e-6):
    rms = torch.sqrt((x ** 2).mean(dim=-1, keepdim=True) + eps)
    return x / rms.detach() * weight
""", {"test_gradient"}),
    "bug_ln_centres_callers_tensor": ("layer_norm", """
def layer_norm(x, weight, bias, eps=1e-5):
    x -= x.mean(dim=-1, keepdim=True)  # changes the caller's tensor
    var = (x ** 2).mean(dim=-1, keepdim=True)
    return x / torch.sqrt(var + eps) * weight + bias
""", {"test_last_dim", "test_biased_variance", "test_constant_tokens", "test_weight_and_bias",
      "test_matches_reference", "test_default_eps", "test_gradient"}),
})
