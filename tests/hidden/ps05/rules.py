"""APIs ps05_normalisation does not allow: its functions build these."""

FORBIDDEN = {
    "torch.nn.functional.layer_norm": "write LayerNorm yourself",
    "torch.layer_norm": "write LayerNorm yourself",
    "torch.nn.LayerNorm": "write LayerNorm yourself",
    "torch.nn.functional.rms_norm": "write RMSNorm yourself",
    "torch.rms_norm": "write RMSNorm yourself",
    "torch.nn.RMSNorm": "write RMSNorm yourself",
    "torch.nn.functional.normalize": "write the normalisation yourself",
    "mastering_transformers.LayerNorm": "it is the answer",
    "mastering_transformers.RMSNorm": "it is the answer",
}
