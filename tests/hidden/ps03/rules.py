"""APIs ps03_scaling does not allow: its functions build these."""

FORBIDDEN = {
    "torch.softmax": "write the softmax yourself",
    "torch.nn.functional.softmax": "write the softmax yourself",
    "torch.log_softmax": "write the softmax yourself",
    "torch.nn.functional.log_softmax": "write the softmax yourself",
    "torch.Tensor.softmax": "write the softmax yourself",
    "torch.Tensor.log_softmax": "write the softmax yourself",
    "torch.logsumexp": "write the log-sum-exp yourself",
    "torch.Tensor.logsumexp": "write the log-sum-exp yourself",
    "torch.special.entr": "write the entropy yourself",
    "torch.special.xlogy": "write the entropy yourself",
    "torch.xlogy": "write the entropy yourself",
    "torch.distributions": "write the entropy yourself",
    "torch.autograd": "derive the Jacobian yourself",
    "torch.func": "derive the Jacobian yourself",
    "torch.nn.functional.scaled_dot_product_attention": "write attention yourself",
    "mastering_transformers.scaled_dot_product_attention": "write attention yourself",
}
