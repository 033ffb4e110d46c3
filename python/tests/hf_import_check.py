"""For a Hugging Face folder and the run the TypeScript side imported from it: imports the folder
again with the PyTorch package into OUT, and prints as JSON the max |logit difference| to the
reference (python/sortednet_torch/hf.py) of (a) the PyTorch package's own import and (b) the
TypeScript-imported run loaded by the PyTorch package, for the token ids given."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sortednet_torch import Ctx, load_checkpoint  # noqa: E402
from sortednet_torch.hf import load_folder  # noqa: E402
from sortednet_torch.hf_import import import_folder  # noqa: E402


def main(folder, ts_run, out, ids):
    torch.set_num_threads(1)
    x = torch.tensor([[int(t) for t in ids.split(",")]])
    with torch.no_grad():
        ref = load_folder(folder)(x)
        ours = import_folder(folder, out)(x, {}, Ctx("eval", "full"))
        ts = load_checkpoint(ts_run).model.eval()(x, {}, Ctx("eval", "full"))
    print(json.dumps({"pytorch_import": float((ours - ref).abs().max()), "typescript_run": float((ts - ref).abs().max())}))


if __name__ == "__main__":
    main(*sys.argv[1:])
