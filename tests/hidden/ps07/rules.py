"""APIs ps07_positions does not allow: its functions build these."""

FORBIDDEN = {
    "mastering_transformers": "its positional functions are the answers",
}
