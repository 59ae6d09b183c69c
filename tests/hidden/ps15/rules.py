"""APIs ps15_interpretability does not allow: its functions build these."""

FORBIDDEN = {
    "mastering_transformers": "it holds the answers",
    "torch.autograd": "derive the gradients of attention by hand",
    "torch.func": "derive the gradients of attention by hand",
    "torch.Tensor.backward": "derive the gradients of attention by hand",
    "torch.nn.functional.rms_norm": "write the RMSNorm yourself",
    "torch.nn.RMSNorm": "write the RMSNorm yourself",
}
