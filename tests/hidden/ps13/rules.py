"""APIs ps13_gpu_training does not allow: its functions count and compute these themselves."""

_COUNT = "count the FLOPs from the formula yourself"
_SCALE = "write the loss-scaling step yourself"
_DIST = "simulate the ranks yourself: the world is a list"

FORBIDDEN = {
    "mastering_transformers": "it holds the answers",
    "torch.utils.flop_counter": _COUNT,
    "torch.amp": _SCALE,
    "torch.cuda.amp": _SCALE,
    "torch.cpu.amp": _SCALE,
    "torch.distributed": _DIST,
    "torch.optim": _SCALE,
}
