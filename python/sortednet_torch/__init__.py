"""sortednet in PyTorch: the sorted model families, the project's checkpoint format, and sorted
training with DistributedDataParallel (`python -m sortednet_torch.train`)."""
from .checkpoint import (
    FORMAT,
    calibrate_bn,
    list_checkpoints,
    load_checkpoint,
    read_meta,
    resolve,
    save_calibration,
    save_checkpoint,
)
from .models import FAMILIES, build_model
from .nn import Ctx
from .submodel import Grid, parse_sub_model, sub_model_id

__all__ = [
    "FORMAT", "FAMILIES", "Ctx", "Grid", "build_model", "calibrate_bn", "load_checkpoint",
    "list_checkpoints", "parse_sub_model", "read_meta", "resolve", "save_calibration", "save_checkpoint",
    "sub_model_id",
]
