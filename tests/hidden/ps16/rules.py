"""APIs ps16_beyond does not allow: its functions build these (torch basics and math are allowed)."""

_FIT = "fit the line yourself from the sums (the formulas are in the task)"
_LINEAR = "write the products yourself: x @ W.T and the two thin LoRA products"

FORBIDDEN = {
    "mastering_transformers": "it holds the answers",
    "numpy": _FIT,
    "scipy": _FIT,
    "torch.linalg.lstsq": _FIT,
    "torch.linalg.pinv": _FIT,
    "torch.linalg.solve": _FIT,
    "torch.linalg.inv": _FIT,
    "torch.nn.functional.linear": _LINEAR,
    "torch.nn.Linear": _LINEAR,
}
