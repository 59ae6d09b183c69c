"""APIs ps04_multihead does not allow: its functions build these."""

FORBIDDEN = {
    "torch.nn.functional.scaled_dot_product_attention": "write attention yourself",
    "torch.nn.MultiheadAttention": "write multi-head attention yourself",
    "einops": "reshape with view, transpose and reshape",
    "mastering_transformers": "it holds the answers",
}
