"""APIs ps14_inference does not allow: its functions build these themselves."""

FORBIDDEN = {
    "mastering_transformers": "it holds the chapter's versions of these functions",
    "torch.nn.functional.scaled_dot_product_attention": "write the attention of the decode step yourself",
    "torch.nn.MultiheadAttention": "write the attention of the decode step yourself",
}
