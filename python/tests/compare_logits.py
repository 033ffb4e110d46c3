"""For each case folder (a checkpoint + cases.safetensors holding an input `x` and the TypeScript
side's logits `logits:<sub-model id>`), loads the checkpoint in PyTorch, recomputes every
sub-model's logits in eval mode and prints {case: {id: max |diff|}} as JSON. With
`--resave DIR`, also saves each loaded model as a checkpoint in DIR/<case> (the other direction)."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sortednet_torch import Ctx, load_checkpoint, parse_sub_model, save_checkpoint, sub_model_id  # noqa: E402
from sortednet_torch.safetensors_io import decode  # noqa: E402


def main(args):
    resave = None
    if args[:1] == ["--resave"]:
        resave, args = args[1], args[2:]
    folders, out = args, {}
    for folder in folders:
        ck = load_checkpoint(folder)
        with open(os.path.join(folder, "cases.safetensors"), "rb") as f:
            tensors, _ = decode(f.read(), "cases.safetensors")
        x = torch.from_numpy(tensors["x"])
        x = x.long() if x.dtype == torch.int32 else x.permute(0, 3, 1, 2)  # NHWC → NCHW
        ck.model.eval()
        diffs = {}
        with torch.no_grad():
            for name, want in tensors.items():
                if not name.startswith("logits:"):
                    continue
                sub = parse_sub_model(name[len("logits:"):])
                got = ck.model(x, sub, Ctx("eval", sub_model_id(sub)))
                diffs[sub_model_id(sub)] = float((got - torch.from_numpy(want)).abs().max())
        out[os.path.basename(folder)] = diffs
        if resave:
            m = ck.meta
            save_checkpoint(os.path.join(resave, os.path.basename(folder)), ck.model, m["grid"], m["step"], m["seed"],
                            train=m.get("train"), dataset=m.get("dataset"))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
