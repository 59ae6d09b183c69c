"""Planted realistic bugs in ps03_scaling: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_scores_divide_by_d_k": ("scaled_scores", """
def scaled_scores(q, k, scale=None):
    if scale is None:
        scale = 1 / q.shape[-1]
    return (q @ k.transpose(-2, -1)) * scale
""", {"test_default_scale"}),
    "bug_scores_divide_by_given_scale": ("scaled_scores", """
def scaled_scores(q, k, scale=None):
    if scale is None:
        return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return q @ k.transpose(-2, -1) / scale
""", {"test_explicit_scale"}),
    "bug_temperature_multiplied": ("softmax_with_temperature", """
def softmax_with_temperature(x, tau, dim=-1):
    z = x * tau
    exps = (z - z.amax(dim=dim, keepdim=True)).exp()
    return exps / exps.sum(dim=dim, keepdim=True)
""", {"test_temperature"}),
    "bug_temperature_global_max": ("softmax_with_temperature", """
def softmax_with_temperature(x, tau, dim=-1):
    z = x / tau
    exps = (z - z.max()).exp()
    return exps / exps.sum(dim=dim, keepdim=True)
""", {"test_large_scores"}),
    "bug_lse_no_max_shift": ("logsumexp", """
def logsumexp(x, dim=-1):
    return x.exp().sum(dim=dim).log()
""", {"test_large_values"}),
    "bug_lse_max_not_added_back": ("logsumexp", """
def logsumexp(x, dim=-1):
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (x - m).exp().sum(dim=dim).log()
""", {"test_last_dim", "test_dim", "test_large_values", "test_neg_inf"}),
    "bug_lse_nan_on_all_neg_inf": ("logsumexp", """
def logsumexp(x, dim=-1):
    m = x.amax(dim=dim, keepdim=True)
    return (x - m).exp().sum(dim=dim).log() + m.squeeze(dim)
""", {"test_neg_inf"}),
    "bug_lse_keepdim": ("logsumexp", """
def logsumexp(x, dim=-1):
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (x - m).exp().sum(dim=dim, keepdim=True).log() + m
""", {"test_shape"}),
    "bug_entropy_nan_on_zeros": ("attention_entropy", """
def attention_entropy(weights):
    return -(weights * weights.log()).sum(dim=-1)
""", {"test_zeros"}),
    "bug_entropy_in_bits": ("attention_entropy", """
def attention_entropy(weights):
    terms = torch.where(weights > 0, weights * weights.log2(), torch.zeros_like(weights))
    return -terms.sum(dim=-1)
""", {"test_no_zeros", "test_zeros", "test_uniform"}),
    "bug_jacobian_missing_diag": ("softmax_jacobian", """
def softmax_jacobian(p):
    return -p[..., :, None] * p[..., None, :]
""", {"test_one_distribution", "test_batched", "test_rows_sum_to_zero"}),
    "bug_jacobian_single_vector_only": ("softmax_jacobian", """
def softmax_jacobian(p):
    return torch.diag(p) - torch.outer(p, p)
""", {"test_shape", "test_batched"}),
}

# Bugs only the second edition's checks catch (issue 14): crossed arguments, size-1 dims, gradients.
BUGS.update({
    "bug_lse_global_max": ("logsumexp", """
def logsumexp(x, dim=-1):
    m = x.max()
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return (x - m).exp().sum(dim=dim).log() + m
""", {"test_large_values"}),
    "bug_lse_squeeze_all": ("logsumexp", """
def logsumexp(x, dim=-1):
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return ((x - m).exp().sum(dim=dim, keepdim=True).log() + m).squeeze()
""", {"test_shape"}),
    "bug_temperature_max_before_dividing": ("softmax_with_temperature", """
def softmax_with_temperature(x, tau, dim=-1):
    exps = ((x - x.amax(dim=dim, keepdim=True)) / tau).exp() if tau >= 1 else (x / tau - x.amax(dim=dim, keepdim=True)).exp()
    return exps / exps.sum(dim=dim, keepdim=True)
""", {"test_large_scores_any_temperature"}),
    "bug_temperature_detached": ("softmax_with_temperature", """
def softmax_with_temperature(x, tau, dim=-1):
    z = x.detach() / tau
    exps = (z - z.amax(dim=dim, keepdim=True)).exp()
    return exps / exps.sum(dim=dim, keepdim=True)
""", {"test_gradient"}),
    "bug_scores_via_numpy": ("scaled_scores", """
def scaled_scores(q, k, scale=None):
    if scale is None:
        scale = 1 / math.sqrt(q.shape[-1])
    s = q.detach().numpy() @ k.detach().numpy().swapaxes(-2, -1)
    return torch.from_numpy(s) * scale
""", {"test_gradient"}),
})
