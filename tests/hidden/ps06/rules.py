"""APIs ps06_feedforward does not allow: its functions build these."""

FORBIDDEN = {
    "torch.nn": "build the layers from tensors",
    "mastering_transformers": "it holds the answers",
}
