"""APIs ps02_attention does not allow: its functions build these."""

FORBIDDEN = {
    "torch.softmax": "write the softmax yourself",
    "torch.nn.functional.softmax": "write the softmax yourself",
    "torch.log_softmax": "write the softmax yourself",
    "torch.nn.functional.log_softmax": "write the softmax yourself",
    "torch.Tensor.softmax": "write the softmax yourself",
    "torch.Tensor.log_softmax": "write the softmax yourself",
    "torch.logsumexp": "write the softmax yourself",
    "torch.Tensor.logsumexp": "write the softmax yourself",
    "torch.nn.functional.scaled_dot_product_attention": "write attention yourself",
    "torch.nn.MultiheadAttention": "write attention yourself",
    "mastering_transformers.scaled_dot_product_attention": "write attention yourself",
}
