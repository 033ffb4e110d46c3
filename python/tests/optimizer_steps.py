"""For each (input, output, JSON config) triple of arguments: runs sortednet_torch's optimizer for
`steps` updates on the parameters and per-step gradients of the input safetensors file
(`p:<name>`, `g<k>:<name>`); writes the resulting parameters (`p:`) and state (`s:`) to the
output file (test/torch_optim.test.ts)."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sortednet_torch.optim import Optimizer  # noqa: E402
from sortednet_torch.safetensors_io import decode, encode  # noqa: E402
from sortednet_torch.submodel import cosine_lr  # noqa: E402


def run(src, dst, config):
    with open(src, "rb") as f:
        t, _ = decode(f.read())
    params = {k[2:]: torch.nn.Parameter(torch.from_numpy(v)) for k, v in t.items() if k.startswith("p:")}
    opt = Optimizer(config["optimizer"], list(params.items()))
    for step in range(config["steps"]):
        for name, p in params.items():
            g = t.get(f"g{step}:{name}")
            p.grad = None if g is None else torch.from_numpy(g)
        opt.apply(cosine_lr(step, config["steps"], config["optimizer"]["lr"], config["warmup"]))
    out = {f"p:{k}": p.detach().numpy() for k, p in params.items()}
    out.update({f"s:{k}": v.numpy() for k, v in opt.state.items()})
    with open(dst, "wb") as f:
        f.write(encode(out))


args = sys.argv[1:]
for i in range(0, len(args), 3):
    run(args[i], args[i + 1], json.loads(args[i + 2]))
