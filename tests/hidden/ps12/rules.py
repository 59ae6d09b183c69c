"""APIs ps12_flash does not allow: its functions build these (torch.exp, .amax, torch.maximum, torch.where,
@, .masked_fill, torch.cat and the like are allowed)."""

_SOFTMAX = "write the (online) softmax yourself"
_ATTENTION = "write the tiled attention yourself"

FORBIDDEN = {
    "mastering_transformers": "it holds the answers",
    "torch.softmax": _SOFTMAX,
    "torch.nn.functional.softmax": _SOFTMAX,
    "torch.Tensor.softmax": _SOFTMAX,
    "torch.log_softmax": _SOFTMAX,
    "torch.nn.functional.log_softmax": _SOFTMAX,
    "torch.Tensor.log_softmax": _SOFTMAX,
    "torch.special.softmax": _SOFTMAX,
    "torch.special.log_softmax": _SOFTMAX,
    "torch.logsumexp": _SOFTMAX,
    "torch.Tensor.logsumexp": _SOFTMAX,
    "torch.special.logsumexp": _SOFTMAX,
    "torch.nn.functional.scaled_dot_product_attention": _ATTENTION,
    "torch.nn.MultiheadAttention": _ATTENTION,
    "torch.autograd": "write the backward pass of the tile yourself",
}
