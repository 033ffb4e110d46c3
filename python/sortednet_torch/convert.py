"""A PyTorch state dict (.pt / .pth, as `torch.save(model.state_dict(), path)` writes it) →
safetensors, for `sortednet import --torchvision ARCH --weights OUT.safetensors`.

    python -m sortednet_torch.convert IN.pt OUT.safetensors

The file is read with `weights_only=True` where this torch has it (no code from the file runs);
a checkpoint that wraps the state dict (`{"state_dict": …}` or `{"model": …}`) is unwrapped, and
DataParallel's `module.` prefix is dropped. Every tensor is written as it is (float32, BatchNorm
counters int64); another dtype is an error naming the tensor.
"""
import argparse
import inspect
import sys

import numpy as np
import torch

from .cli import run_command
from .safetensors_io import encode


def load_state_dict(path):
    kwargs = {"map_location": "cpu"}
    if "weights_only" in inspect.signature(torch.load).parameters:
        kwargs["weights_only"] = True
    obj = torch.load(path, **kwargs)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict (a dict of tensor names to tensors); save model.state_dict()")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def convert(src, dst):
    state = load_state_dict(src)
    out = {}
    for name, t in state.items():
        a = t.detach().cpu().contiguous().numpy()
        if a.dtype == np.float64 or a.dtype == np.float16:
            raise ValueError(f"{src}: tensor '{name}' is {a.dtype}; convert the model to float32 first (model.float())")
        if a.dtype not in (np.float32, np.int32, np.int64):
            raise ValueError(f"{src}: tensor '{name}' has dtype {a.dtype}; only float32, int32 and int64 are written")
        out[name] = a
    with open(dst, "wb") as f:
        f.write(encode(out, {"format": "pt"}))
    return len(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="the .pt / .pth state dict")
    p.add_argument("dst", help="the .safetensors file to write")
    a = p.parse_args(argv)
    return run_command(lambda: f"wrote {convert(a.src, a.dst)} tensors to {a.dst}", (ValueError, OSError), "convert", 1)


if __name__ == "__main__":
    sys.exit(main())
