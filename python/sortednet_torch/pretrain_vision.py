"""Trains a torchvision classifier on Fashion-MNIST in plain PyTorch and saves its state dict as
safetensors: the "pre-trained model" a user brings to `sortednet import --torchvision`.

    python -m sortednet_torch.pretrain_vision --arch resnet18 --steps 400 --out resnet18.safetensors

Fashion-MNIST images are 1×28×28; the network's first convolution is replaced by one that takes a
single channel (same kernel, stride and padding), as torchvision users do for grey images. The
rest is `torchvision.models.<arch>(num_classes=10)` unchanged, so the file imports as that
architecture (the importer reads the input channels and classes from the first conv and the
classifier). Inputs are normalised exactly as sortednet's data loader does (per-channel mean/std
of the train split), so the imported model sees the same numbers.

Debian's torch 1.13 has crashed ("double free") in the backward pass of ResNets on some AMD
machines with oneDNN (mkldnn) enabled; this script turns oneDNN off and runs on the threads given
(`--threads`, default 1), which ran cleanly here.
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torchvision
from torch import nn

from .data import load_dataset
from .safetensors_io import encode


def grey_input(model, arch):
    """The first conv of `model` made to take 1 channel (same shape otherwise)."""
    if arch.startswith("resnet"):
        c = model.conv1
        model.conv1 = nn.Conv2d(1, c.out_channels, c.kernel_size, c.stride, c.padding, bias=False)
    elif arch == "mobilenet_v2":
        c = model.features[0][0]
        model.features[0][0] = nn.Conv2d(1, c.out_channels, c.kernel_size, c.stride, c.padding, bias=False)
    else:
        raise ValueError(f"unknown architecture '{arch}'; supported: resnet18, resnet34, resnet50, mobilenet_v2")
    return model


def evaluate(model, x, y, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50", "mobilenet_v2"])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--steps", type=int, default=400, help="optimizer steps (one batch each)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (cosine decay, 20 warm-up steps)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mkldnn", action="store_true", help="keep oneDNN on (faster; has crashed in backward on some AMD machines)")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    a = p.parse_args(argv)

    torch.backends.mkldnn.enabled = a.mkldnn  # off by default: see the module comment
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    spec = {"name": a.data}
    if a.train_subset:
        spec["trainSubset"] = a.train_subset
    if a.test_subset:
        spec["testSubset"] = a.test_subset
    train, test = load_dataset(spec)
    # NHWC as sortednet holds images → NCHW as PyTorch does.
    xtr = torch.from_numpy(np.ascontiguousarray(train.images.transpose(0, 3, 1, 2)))
    ytr = torch.from_numpy(train.labels)
    xte = torch.from_numpy(np.ascontiguousarray(test.images.transpose(0, 3, 1, 2)))
    yte = torch.from_numpy(test.labels)

    model = grey_input(getattr(torchvision.models, a.arch)(num_classes=train.classes), a.arch)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    warm = min(20, a.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, a.steps - warm)))
    )
    gen = torch.Generator().manual_seed(a.seed)
    order = torch.randperm(len(xtr), generator=gen)
    pos = 0
    t0 = time.time()
    model.train()
    for step in range(a.steps):
        if pos + a.batch_size > len(order):
            order, pos = torch.randperm(len(xtr), generator=gen), 0
        idx = order[pos : pos + a.batch_size]
        pos += a.batch_size
        loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 50 == 0 or step + 1 == a.steps:
            print(f"step {step + 1}/{a.steps} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    seconds = time.time() - t0
    acc = evaluate(model, xte, yte)
    print(f"{a.arch}: test accuracy {100 * acc:.2f}% on {len(xte)} images after {a.steps} steps × batch {a.batch_size} ({seconds:.0f} s)")
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    with open(a.out, "wb") as f:
        f.write(encode(state, {"format": "pt", "arch": a.arch}))
    record = {"arch": a.arch, "steps": a.steps, "batchSize": a.batch_size, "lr": a.lr, "seed": a.seed,
              "trainSubset": a.train_subset, "testAccuracy": acc, "seconds": seconds}
    with open(a.out + ".json", "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
