"""Planted realistic bugs in ps02_attention: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    "bug_scores_no_scale": ("attention_scores", """
def attention_scores(q, k):
    return q @ k.transpose(-2, -1)
""", {"test_scale"}),
    "bug_scores_no_transpose": ("attention_scores", """
def attention_scores(q, k):
    return q @ k / math.sqrt(q.shape[-1])
""", {"test_shape", "test_dot_products", "test_scale"}),
    "bug_softmax_no_max": ("stable_softmax", """
def stable_softmax(x, dim=-1):
    exps = x.exp()
    return exps / exps.sum(dim=dim, keepdim=True)
""", {"test_large_scores"}),
    "bug_softmax_ignores_dim": ("stable_softmax", """
def stable_softmax(x, dim=-1):
    exps = (x - x.amax(dim=-1, keepdim=True)).exp()
    return exps / exps.sum(dim=-1, keepdim=True)
""", {"test_dim"}),
    "bug_mask_diagonal_masked": ("causal_mask", """
def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)
""", {"test_diagonal"}),
    "bug_mask_one_future_token": ("causal_mask", """
def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=1)
""", {"test_past_and_future"}),
    "bug_attention_softmax_over_queries": ("attention", """
def attention(q, k, v, mask=None):
    scores = attention_scores(q, k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = stable_softmax(scores, dim=-2)
    return weights @ v, weights
""", {"test_weights_are_distributions", "test_matches_reference", "test_mask"}),
    "bug_attention_mask_inverted": ("attention", """
def attention(q, k, v, mask=None):
    scores = attention_scores(q, k)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = stable_softmax(scores, dim=-1)
    return weights @ v, weights
""", {"test_mask"}),
}
