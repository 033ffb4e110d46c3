"""PyTorch CPU anchor for bench/run.ts: the same shapes, timed the same way (median after warm-up).

Prints one JSON object {case: milliseconds}. Install: apt-get install python3-torch libopenblas0-pthread.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)


def median_ms(fn, reps=7, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    return ts[len(ts) // 2]


out = {}
for n in (256, 512, 1024):
    a, b = torch.randn(n, n), torch.randn(n, n)
    out[f"gemm {n}"] = median_ms(lambda: a @ b, reps=9)

# 4-conv CNN training step, batch 64, 32×32×3, plain SGD (engine.md's anchor shape).
cnn = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
    nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
    nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
    nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
)
opt = torch.optim.SGD(cnn.parameters(), lr=0.01)
x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))


def cnn_step():
    opt.zero_grad()
    F.cross_entropy(cnn(x), y).backward()
    opt.step()


out["cnn step"] = median_ms(cnn_step, reps=15)


class Block(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, h, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, f), nn.GELU(), nn.Linear(f, d))

    def forward(self, x, mask):
        a = self.ln1(x)
        x = x + self.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
        return x + self.ffn(self.ln2(x))


class LM(nn.Module):
    def __init__(self, vocab=256, d=256, h=4, f=1024, layers=4, T=128):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList([Block(d, h, f) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)

    def forward(self, ids):
        T = ids.shape[1]
        mask = torch.triu(torch.full((T, T), float("-inf")), 1)
        x = self.tok(ids) + self.pos(torch.arange(T))
        for b in self.blocks:
            x = b(x, mask)
        return self.ln(x) @ self.tok.weight.T


for batch in (1, 8):
    lm = LM()
    lopt = torch.optim.SGD(lm.parameters(), lr=0.01)
    ids = torch.randint(0, 256, (batch, 128))

    def lm_step():
        lopt.zero_grad()
        logits = lm(ids)
        F.cross_entropy(logits.reshape(-1, 256), ids.reshape(-1)).backward()
        lopt.step()

    out[f"transformer step b{batch}"] = median_ms(lm_step, reps=15 if batch == 1 else 7)


# The sorted ResNet's sub-model at each width as the dense network it is (bench/run.ts: ResNet on
# 28×28×1, stem 16, stages 16/32/64 × 2 basic blocks, BN, 1×1 projections where stride or width
# changes, batch 64): what PyTorch pays for the same shapes.
def units(fraction, full):
    return max(1, min(full, math.ceil(fraction * full - 1e-9)))


class Basic(nn.Module):
    def __init__(self, cin, c, stride, projection):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.sc = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c)) if projection else None

    def forward(self, x):
        h = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(h + (self.sc(x) if self.sc is not None else x))


def resnet(width):
    stem = units(width, 16)
    layers = [nn.Conv2d(1, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
    cin, cin_full = stem, 16
    for s, full in enumerate((16, 32, 64)):
        for b in range(2):
            stride = 2 if b == 0 and s > 0 else 1
            layers.append(Basic(cin, units(width, full), stride, stride != 1 or cin_full != full))
            cin, cin_full = units(width, full), full
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


img, labels, one = torch.randn(64, 1, 28, 28), torch.arange(64) % 10, torch.randn(1, 1, 28, 28)
for width in (0.25, 0.5, 0.75, 1):
    net = resnet(width)
    ropt = torch.optim.SGD(net.parameters(), lr=0.01)

    def resnet_step():
        ropt.zero_grad()
        F.cross_entropy(net(img), labels).backward()
        ropt.step()

    out[f"sorted step width {width:g}"] = median_ms(resnet_step, reps=15)
    net.eval()
    with torch.no_grad():
        out[f"latency b1 width {width:g}"] = median_ms(lambda: net(one), reps=15)


# The same sorted step in the project's own PyTorch package (python/sortednet_torch), which slices each
# sub-network's weights by copying and pads their gradients back, as sorted models written in PyTorch do.
try:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    from sortednet_torch.models import build_model
    from sortednet_torch.nn import Ctx
    from sortednet_torch.presets import PRESETS
    from sortednet_torch.submodel import sub_model_id

    sorted_net = build_model(PRESETS["resnet-small"][0](1, 28, 10))
    sopt = torch.optim.SGD(sorted_net.parameters(), lr=0.01)
    for width in (0.25, 0.5, 0.75, 1):
        sub = {"width": width}
        ctx = Ctx("train", sub_model_id(sub))

        def sorted_step():
            sopt.zero_grad()
            F.cross_entropy(sorted_net(img, sub, ctx), labels).backward()
            sopt.step()

        out[f"package sorted step width {width:g}"] = median_ms(sorted_step, reps=15)
except Exception as err:  # the package is optional here: the other rows still stand
    print(f"sortednet_torch sorted step skipped: {err}", file=sys.stderr)

print(json.dumps(out))
