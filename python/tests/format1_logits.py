"""Loads a format-1 checkpoint folder (test/fixtures/checkpoint-v1/<family>) twice, without and with
bn_calibrated.safetensors, recomputes the logits its expected.json lists and prints
{"saved" | "calibrated": {sub-model id: max |diff|}, "counts": [...]} as JSON."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sortednet_torch import Ctx, load_checkpoint, parse_sub_model  # noqa: E402
from sortednet_torch.nn import BatchNorm2d  # noqa: E402


def main(run):
    with open(os.path.join(run, "expected.json"), encoding="utf-8") as f:
        expected = json.load(f)
    x = torch.tensor(expected["input"]["data"]).reshape(expected["input"]["shape"]).permute(0, 3, 1, 2)  # NHWC → NCHW
    out = {"counts": []}
    for part, calibrated in (("saved", False), ("calibrated", True)):
        model = load_checkpoint(run, calibrated=calibrated).model.eval()
        bn = next(m for m in model.modules() if isinstance(m, BatchNorm2d))
        out["counts"].append({k: n for k, (_, _, n) in sorted(bn.stats.items())})
        with torch.no_grad():
            out[part] = {
                key: float((model(x, parse_sub_model(key), Ctx("eval", key)).flatten() - torch.tensor(want)).abs().max())
                for key, want in expected[part].items()
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
