"""Elastic layers (torch.nn modules with the TypeScript side's parameter names). Every layer reads
its active input width from x and takes its active output width as an argument: the sub-model
travels with the call, never as module state. Images are NCHW here; weights are PyTorch's layouts
(conversion to the checkpoint's layouts lives in checkpoint.py)."""
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .submodel import check_units


@dataclass(frozen=True)
class Ctx:
    """What a forward pass needs besides its input: the mode ('train', 'eval', 'calibrate'), the
    sub-model id (BatchNorm keeps statistics per sub-model) and whether BN batch statistics span
    every rank (distributed training: the global batch, as one process would see it)."""

    mode: str
    key: str
    #: the process group whose ranks share BN batch statistics in training (None: this rank alone)
    bn_group: object = None


def same_pad(x, kernel, stride):
    """TensorFlow's 'same' padding: the odd pixel goes at the bottom/right (PyTorch pads symmetrically)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def uniform_fan_in(shape, fan_in):
    b = 1 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-b, b))


class Linear(nn.Module):
    """y = x·Wᵀ + b, W [out, in]; uses W[:out, :in'] with in' read from x."""

    def __init__(self, in_features, out_features, bias=True, name="linear"):
        super().__init__()
        self.in_features, self.out_features, self.name = in_features, out_features, name
        self.weight = uniform_fan_in((out_features, in_features), in_features)
        self.bias = uniform_fan_in((out_features,), in_features) if bias else None

    def forward(self, x, out=None):
        out = self.out_features if out is None else out
        cin = check_units(x.shape[-1], self.in_features, self.name, "input width")
        check_units(out, self.out_features, self.name, "width")
        return F.linear(x, self.weight[:out, :cin], None if self.bias is None else self.bias[:out])


def conv_padding(mode, kernel):
    """A model's padding mode for a k×k conv: TF 'same', or PyTorch's symmetric (k - 1) // 2 per side."""
    return (kernel - 1) // 2 if mode == "symmetric" else "same"


class Conv2d(nn.Module):
    """Convolution with TF 'same' (or 'valid') padding, or p zeros per side (an int, PyTorch's
    symmetric padding); weight [out, in, k, k], sliced to [:out, :in']."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, padding="same", bias=False, name="conv"):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel = in_channels, out_channels, kernel
        self.stride, self.padding, self.name = stride, padding, name
        fan_in = kernel * kernel * in_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel) * math.sqrt(2 / fan_in))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x, out=None):
        out = self.out_channels if out is None else out
        cin = check_units(x.shape[1], self.in_channels, self.name, "input channels")
        check_units(out, self.out_channels, self.name, "channels")
        if self.padding == "same":
            x = same_pad(x, self.kernel, self.stride)
        b = None if self.bias is None else self.bias[:out]
        pad = self.padding if isinstance(self.padding, int) else 0
        return F.conv2d(x, self.weight[:out, :cin], b, self.stride, pad)


class DepthwiseConv2d(nn.Module):
    """Depthwise convolution (multiplier 1), 'same' padding (or p zeros per side); weight [C, 1, k, k];
    channels follow x."""

    def __init__(self, channels, kernel, stride=1, padding="same", name="dwconv"):
        super().__init__()
        self.channels, self.kernel, self.stride, self.padding, self.name = channels, kernel, stride, padding, name
        self.weight = nn.Parameter(torch.randn(channels, 1, kernel, kernel) * math.sqrt(2 / (kernel * kernel)))

    def forward(self, x):
        c = check_units(x.shape[1], self.channels, self.name, "channels")
        if self.padding == "same":
            return F.conv2d(same_pad(x, self.kernel, self.stride), self.weight[:c], None, self.stride, groups=c)
        return F.conv2d(x, self.weight[:c], None, self.stride, self.padding, groups=c)


def _moments(x, group):
    """Per-channel mean and biased variance over N, H, W; over every rank's batch when a group is
    given, so a sharded global batch is normalised as one process would normalise it."""
    if group is None:
        return x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    from torch.distributed.nn.functional import all_reduce  # differentiable: backward all-reduces too

    n = torch.tensor([float(x.shape[0] * x.shape[2] * x.shape[3])], dtype=x.dtype, device=x.device)
    dist.all_reduce(n, group=group)
    mean = all_reduce(x.sum((0, 2, 3)), group=group) / n
    var = all_reduce(((x - mean[None, :, None, None]) ** 2).sum((0, 2, 3)), group=group) / n
    return mean, var


class BatchNorm2d(nn.Module):
    """BatchNorm with statistics PER SUB-MODEL (`stats[key] = (mean, variance, count)`): sliced
    sub-models see different feature statistics. train: batch statistics, no state change;
    calibrate: batch statistics, accumulated as a cumulative average under ctx.key; eval: the
    statistics stored under ctx.key."""

    def __init__(self, channels, name="bn", eps=1e-5):
        super().__init__()
        self.channels, self.name, self.eps = channels, name, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.stats = {}

    def forward(self, x, ctx):
        c = check_units(x.shape[1], self.channels, self.name, "channels")
        if ctx.mode == "eval":
            if ctx.key not in self.stats:
                raise KeyError(
                    f"BatchNorm '{self.name}' has no statistics for sub-model '{ctx.key}': calibrate it first (calibrate_bn)"
                )
            mean, var, _ = self.stats[ctx.key]
            if mean.shape[0] != c:
                raise ValueError(f"BatchNorm '{self.name}': statistics for '{ctx.key}' have {mean.shape[0]} channels, input has {c}")
        else:
            mean, var = _moments(x, ctx.bn_group if ctx.mode == "train" else None)
            if ctx.mode == "calibrate":
                self._accumulate(ctx.key, mean.detach(), var.detach())
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight[:c].view(shape) + self.bias[:c].view(shape)

    def _apply(self, fn, *args, **kwargs):
        # .to(device) / .double() move the per-sub-model statistics along with the parameters.
        out = super()._apply(fn, *args, **kwargs)
        self.stats = {k: (fn(m), fn(v), n) for k, (m, v, n) in self.stats.items()}
        return out

    def _accumulate(self, key, mean, var):
        old = self.stats.get(key)
        if old is None:
            self.stats[key] = (mean.clone(), var.clone(), 1)
            return
        m0, v0, n = old  # cumulative average: after k batches each weighs 1/k
        self.stats[key] = (m0 * (n / (n + 1)) + mean * (1 / (n + 1)), v0 * (n / (n + 1)) + var * (1 / (n + 1)), n + 1)


class LayerNorm(nn.Module):
    """LayerNorm over the ACTIVE features only (sorted embedding dim)."""

    def __init__(self, features, name="ln", eps=1e-5):
        super().__init__()
        self.features, self.name, self.eps = features, name, eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x):
        e = check_units(x.shape[-1], self.features, self.name, "features")
        return F.layer_norm(x, (e,), self.weight[:e], self.bias[:e], self.eps)


class RMSNorm(nn.Module):
    """x / rms(x) · g over the active features."""

    def __init__(self, features, name="rmsnorm", eps=1e-6):
        super().__init__()
        self.features, self.name, self.eps = features, name, eps
        self.weight = nn.Parameter(torch.ones(features))

    def forward(self, x):
        e = check_units(x.shape[-1], self.features, self.name, "features")
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight[:e]


class Embedding(nn.Module):
    """Table [vocab, dim]; the first `dim'` features of each row (Matryoshka-style prefix)."""

    def __init__(self, vocab, dim, name="embedding"):
        super().__init__()
        self.vocab, self.dim, self.name = vocab, dim, name
        self.weight = nn.Parameter(torch.randn(vocab, dim) * 0.02)

    def forward(self, ids, dim=None):
        dim = self.dim if dim is None else check_units(dim, self.dim, self.name, "embedding dim")
        return F.embedding(ids, self.weight[:, :dim])


def activate(x, act):
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    if act == "gelu":
        return F.gelu(x, approximate="tanh")  # the TypeScript side's GELU is the tanh form
    if act == "silu":
        return F.silu(x)
    if act == "none":
        return x
    raise ValueError(f"unknown activation '{act}'; known: relu, relu6, gelu, silu, none")


def inverse_frequencies(d, base, scaling=None):
    """base^(−2i/d), i < d/2, in double precision; Llama-3-scaled when `scaling` (the config's
    ropeScaling: factor, lowFreqFactor, highFreqFactor, originalMaxPositions) is given."""
    exponent = -2 * torch.arange(d // 2, dtype=torch.float64) / d
    inv = torch.pow(torch.tensor(float(base), dtype=torch.float64), exponent)
    if not scaling:
        return inv
    factor, low, high, old = (scaling[k] for k in ("factor", "lowFreqFactor", "highFreqFactor", "originalMaxPositions"))
    wavelen = 2 * math.pi / inv
    smooth = (old / wavelen - low) / (high - low)
    mid = (1 - smooth) * inv / factor + smooth * inv
    return torch.where(wavelen < old / high, inv, torch.where(wavelen > old / low, inv / factor, mid))


def apply_rotary(x, base, start=0, scaling=None):
    """Rotary positions (rotate-half form, as Hugging Face LLaMA): x [B, h, T, d] at positions
    start.., the pair (x_i, x_{i+d/2}) rotated by pos·inv_freq_i (base^(−2i/d), Llama-3-scaled
    when asked). Angles in double precision, as the TypeScript tables."""
    T, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"rotary: head size {d} must be even")
    half = d // 2
    pos = torch.arange(start, start + T, dtype=torch.float64)[:, None]
    angle = pos * inverse_frequencies(d, base, scaling)  # [T, d/2]
    cos = torch.cat([angle.cos(), angle.cos()], -1).to(x.dtype).to(x.device)
    sin = torch.cat([angle.sin(), angle.sin()], -1).to(x.dtype).to(x.device)
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def match_channels(x, c):
    """Zero-pads or slices x's channels to c: a sorted residual's identity shortcut."""
    cin = x.shape[1]
    if cin == c:
        return x
    if cin > c:
        return x[:, :c]
    return F.pad(x, (0, 0, 0, 0, 0, c - cin))
