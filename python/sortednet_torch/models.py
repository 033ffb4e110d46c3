"""The sorted model families, built from checkpoint.json's `model` spec ({family, config}), with
the TypeScript side's parameter names, prefix slicing and depth order. Image models take NCHW
float32 images; the transformer takes int64 token ids [B, T]. `forward(x, sub, ctx)` returns
logits: [B, classes], or [B, T, vocab] for a language model."""
import torch
import torch.nn.functional as F
from torch import nn

from .nn import (
    BatchNorm2d,
    Conv2d,
    DepthwiseConv2d,
    Embedding,
    LayerNorm,
    Linear,
    RMSNorm,
    activate,
    apply_rotary,
    conv_padding,
    match_channels,
)
from .submodel import (
    blocks_per_stage,
    check_depth,
    check_layer_names,
    check_units,
    layer_units,
    units_for,
)


class SortedModel(nn.Module):
    family = ""

    def validate(self, sub):
        raise NotImplementedError

    @property
    def max_depth(self):
        """Blocks (layers) of the full model: a sub-model with fewer leaves parameters unused."""
        raise NotImplementedError

    def flops(self, sub):
        """Forward FLOPs per sample of `sub`, as the TypeScript side's cost() counts them (it orders grids)."""
        raise NotImplementedError


class Mlp(SortedModel):
    family = "mlp"

    def __init__(self, config):
        super().__init__()
        if not config["hidden"]:
            raise ValueError("mlp: needs at least one hidden layer")
        self.config = config
        dims = [config["inputs"], *config["hidden"]]
        self.layers = nn.ModuleList(Linear(dims[i], h, name=f"layers.{i}") for i, h in enumerate(config["hidden"]))
        self.head = Linear(max(config["hidden"]), config["classes"], name="head")

    @property
    def max_depth(self):
        return len(self.config["hidden"])

    def widths(self, sub):
        depth = check_depth(sub.get("depth"), 1, len(self.config["hidden"]), "mlp")
        return [layer_units(sub, f"layers.{i}", h) for i, h in enumerate(self.config["hidden"][:depth])]

    def validate(self, sub):
        check_layer_names(sub, [f"layers.{i}" for i in range(len(self.config["hidden"]))], "mlp")
        self.widths(sub)

    def flops(self, sub):
        f, cin = 0, self.config["inputs"]
        for w in self.widths(sub):
            f, cin = f + 2 * cin * w, w
        return f + 2 * cin * self.config["classes"]

    def forward(self, x, sub, ctx=None):
        # Flatten in the TypeScript side's NHWC order (H, W, C), so image inputs match its weights.
        h = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) if x.dim() == 4 else x
        for i, w in enumerate(self.widths(sub)):
            h = activate(self.layers[i](h, w), self.config.get("activation", "relu"))
        return self.head(h)


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN + shortcut (1×1 conv + BN, or identity with channel matching), ReLU."""

    def __init__(self, cin, spec, name, padding="same"):
        super().__init__()
        pad = conv_padding(padding, 3)
        self.conv1 = Conv2d(cin, spec["mid"], 3, stride=spec["stride"], padding=pad, name=f"{name}.conv1")
        self.bn1 = BatchNorm2d(spec["mid"], f"{name}.bn1")
        self.conv2 = Conv2d(spec["mid"], spec["out"], 3, padding=pad, name=f"{name}.conv2")
        self.bn2 = BatchNorm2d(spec["out"], f"{name}.bn2")
        if spec["projection"]:
            self.shortcut = Conv2d(cin, spec["out"], 1, stride=spec["stride"], name=f"{name}.shortcut")
            self.shortcutBn = BatchNorm2d(spec["out"], f"{name}.shortcutBn")
        else:
            if spec["stride"] != 1:
                raise ValueError(f"{name}: an identity shortcut needs stride 1, got {spec['stride']}")
            self.shortcut = None

    def forward(self, x, mid, out, ctx):
        h = F.relu(self.bn1(self.conv1(x, mid), ctx))
        h = self.bn2(self.conv2(h, out), ctx)
        s = self.shortcutBn(self.shortcut(x, out), ctx) if self.shortcut is not None else match_channels(x, out)
        return F.relu(h + s)


class Bottleneck(nn.Module):
    """conv1×1-BN-ReLU, conv3×3-BN-ReLU (the stride here, as torchvision's ResNet-50), conv1×1-BN +
    shortcut, ReLU; `mid` is the inner width, `out` the block's output."""

    def __init__(self, cin, spec, name, padding="same"):
        super().__init__()
        mid, out, stride = spec["mid"], spec["out"], spec["stride"]
        self.conv1 = Conv2d(cin, mid, 1, name=f"{name}.conv1")
        self.bn1 = BatchNorm2d(mid, f"{name}.bn1")
        self.conv2 = Conv2d(mid, mid, 3, stride=stride, padding=conv_padding(padding, 3), name=f"{name}.conv2")
        self.bn2 = BatchNorm2d(mid, f"{name}.bn2")
        self.conv3 = Conv2d(mid, out, 1, name=f"{name}.conv3")
        self.bn3 = BatchNorm2d(out, f"{name}.bn3")
        if spec["projection"]:
            self.shortcut = Conv2d(cin, out, 1, stride=stride, name=f"{name}.shortcut")
            self.shortcutBn = BatchNorm2d(out, f"{name}.shortcutBn")
        else:
            if stride != 1:
                raise ValueError(f"{name}: an identity shortcut needs stride 1, got {stride}")
            self.shortcut = None

    def forward(self, x, mid, out, ctx):
        h = F.relu(self.bn1(self.conv1(x, mid), ctx))
        h = F.relu(self.bn2(self.conv2(h, mid), ctx))
        h = self.bn3(self.conv3(h, out), ctx)
        s = self.shortcutBn(self.shortcut(x, out), ctx) if self.shortcut is not None else match_channels(x, out)
        return F.relu(h + s)


class StagedModel(SortedModel):
    """A stem conv + BN (3×3 stride `stem_stride`, or 7×7 stride 2 and a max-pool for ResNet's
    ImageNet layout), then stages of blocks (`stages.{s}.{b}`), run to a depth budget in the
    round-robin order of blocks_per_stage. `padding`: 'same' (TF) or 'symmetric' (PyTorch)."""

    stem_kernel, stem_stride = 3, 1

    def __init__(self, config, block):
        super().__init__()
        if not config["stages"] or any(not st for st in config["stages"]):
            raise ValueError(f"{self.family}: every stage needs at least one block")
        self.config = config
        self.padding = config.get("padding", "same")
        if self.padding not in ("same", "symmetric"):
            raise ValueError(f"{self.family}: padding '{self.padding}' is not one of same, symmetric")
        k = self.stem_kernel
        self.stem = Conv2d(config["inChannels"], config["stem"], k, stride=self.stem_stride,
                           padding=conv_padding(self.padding, k), name="stem")
        self.stemBn = BatchNorm2d(config["stem"], "stemBn")
        cin, stages = config["stem"], []
        for si, stage in enumerate(config["stages"]):
            blocks = []
            for bi, spec in enumerate(stage):
                blocks.append(block(cin, spec, f"stages.{si}.{bi}", self.padding))
                cin = spec["out"]
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)

    @property
    def max_depth(self):
        return sum(map(len, self.config["stages"]))

    def active_blocks(self, sub):
        """(stage, block, spec) of the blocks `sub` runs, in order."""
        st = self.config["stages"]
        depth = check_depth(sub.get("depth"), len(st), self.max_depth, self.family)
        for s, n in enumerate(blocks_per_stage([len(x) for x in st], depth)):
            for b in range(n):
                yield s, b, st[s][b]


class ResNet(StagedModel):
    """Basic blocks and a 3×3 stem by default; `block: bottleneck`, `stemLayout: imagenet` (7×7
    stride 2 + 3×3 stride-2 max-pool) and `padding: symmetric` give torchvision's ResNets."""

    family = "resnet"

    def __init__(self, config):
        for key, known in (("block", ("basic", "bottleneck")), ("stemLayout", ("cifar", "imagenet"))):
            if config.get(key, known[0]) not in known:
                raise ValueError(f"resnet: {key} '{config[key]}' is not one of {', '.join(known)}")
        self.imagenet = config.get("stemLayout") == "imagenet"
        self.stem_kernel, self.stem_stride = (7, 2) if self.imagenet else (3, 1)
        self.bottleneck = config.get("block") == "bottleneck"
        super().__init__(config, Bottleneck if self.bottleneck else BasicBlock)
        self.head = Linear(max(b["out"] for b in config["stages"][-1]), config["classes"], name="head")

    @property
    def out_layer(self):
        return "conv3" if self.bottleneck else "conv2"

    def elastic_layers(self):
        names = ["stem"]
        for si, st in enumerate(self.config["stages"]):
            for bi in range(len(st)):
                names += [f"stages.{si}.{bi}.conv1", f"stages.{si}.{bi}.{self.out_layer}"]
        return names

    def plan(self, sub):
        blocks = [
            (
                s,
                b,
                layer_units(sub, f"stages.{s}.{b}.conv1", spec["mid"]),
                layer_units(sub, f"stages.{s}.{b}.{self.out_layer}", spec["out"]),
            )
            for s, b, spec in self.active_blocks(sub)
        ]
        return layer_units(sub, "stem", self.config["stem"]), blocks

    def validate(self, sub):
        check_layer_names(sub, self.elastic_layers(), "resnet")
        self.plan(sub)

    def flops(self, sub):
        stem, blocks = self.plan(sub)
        size = -(-self.config["imageSize"] // self.stem_stride)
        f = 2 * self.stem_kernel**2 * self.config["inChannels"] * stem * size**2 + 4 * stem * size**2
        if self.imagenet:
            size = -(-size // 2)
            f += 9 * stem * size**2  # the max-pool's comparisons
        cin = stem
        for s, b, mid, out in blocks:
            spec = self.config["stages"][s][b]
            if self.bottleneck:
                f += 2 * cin * mid * size**2 + 4 * mid * size**2  # 1×1 at the input size
                size = -(-size // spec["stride"])
                f += 2 * 9 * mid * mid * size**2 + 4 * mid * size**2 + 2 * mid * out * size**2 + 4 * out * size**2
            else:
                size = -(-size // spec["stride"])  # 'same': ceil(size / stride)
                f += 2 * 9 * cin * mid * size**2 + 4 * mid * size**2 + 2 * 9 * mid * out * size**2 + 4 * out * size**2
            if spec["projection"]:
                f += 2 * cin * out * size**2 + 4 * out * size**2
            cin = out
        return f + cin * size**2 + 2 * cin * self.config["classes"]

    def forward(self, x, sub, ctx):
        stem, blocks = self.plan(sub)
        h = F.relu(self.stemBn(self.stem(x, stem), ctx))
        if self.imagenet:
            h = F.max_pool2d(h, 3, 2, 1) if self.padding == "symmetric" else F.max_pool2d(
                F.pad(h, _same_pads(h, 3, 2), value=float("-inf")), 3, 2)
        for s, b, mid, out in blocks:
            h = self.stages[s][b](h, mid, out, ctx)
        return self.head(h.mean((2, 3)))


class InvertedResidual(nn.Module):
    """1×1 expand-BN-ReLU6, 3×3 depthwise-BN-ReLU6, 1×1 project-BN; residual as fixed by the full model.
    `expand: false` in the spec: no expand conv, the depthwise conv runs on the input (torchvision, t = 1)."""

    def __init__(self, cin, spec, name, padding="same"):
        super().__init__()
        if spec.get("expand", True):
            self.expand = Conv2d(cin, spec["hidden"], 1, name=f"{name}.expand")
            self.bn1 = BatchNorm2d(spec["hidden"], f"{name}.bn1")
        else:
            if spec["hidden"] != cin:
                raise ValueError(f"{name}: without expansion, hidden ({spec['hidden']}) must equal the input channels ({cin})")
            self.expand = None
        self.depthwise = DepthwiseConv2d(spec["hidden"], 3, stride=spec["stride"],
                                         padding=conv_padding(padding, 3), name=f"{name}.depthwise")
        self.bn2 = BatchNorm2d(spec["hidden"], f"{name}.bn2")
        self.project = Conv2d(spec["hidden"], spec["out"], 1, name=f"{name}.project")
        self.bn3 = BatchNorm2d(spec["out"], f"{name}.bn3")
        self.residual = spec["residual"]
        if self.residual and spec["stride"] != 1:
            raise ValueError(f"{name}: a residual block needs stride 1, got {spec['stride']}")

    def forward(self, x, hidden, out, ctx):
        h = F.relu6(self.bn1(self.expand(x, hidden), ctx)) if self.expand is not None else x
        h = F.relu6(self.bn2(self.depthwise(h), ctx))
        h = self.bn3(self.project(h, out), ctx)
        return h + match_channels(x, out) if self.residual else h


class MobileNetV2(StagedModel):
    family = "mobilenetv2"

    def __init__(self, config):
        self.stem_stride = config.get("stemStride", 1)
        super().__init__(config, InvertedResidual)
        last_in = max(b["out"] for b in config["stages"][-1])
        self.lastConv = Conv2d(last_in, config["last"], 1, name="lastConv")
        self.lastBn = BatchNorm2d(config["last"], "lastBn")
        self.head = Linear(config["last"], config["classes"], name="head")

    def elastic_layers(self):
        names = ["stem", "lastConv"]
        for si, st in enumerate(self.config["stages"]):
            for bi, spec in enumerate(st):
                if spec.get("expand", True):
                    names.append(f"stages.{si}.{bi}.expand")
                names.append(f"stages.{si}.{bi}.project")
        return names

    def plan(self, sub):
        width = sub.get("width", 1)
        stem = layer_units(sub, "stem", self.config["stem"])
        blocks, cin = [], stem
        for s, b, spec in self.active_blocks(sub):
            # Without expansion the depthwise conv runs on the block's input: hidden = the width before it.
            hidden = (layer_units(sub, f"stages.{s}.{b}.expand", spec["hidden"], width * sub.get("expand", 1))
                      if spec.get("expand", True) else cin)
            blocks.append((s, b, hidden, layer_units(sub, f"stages.{s}.{b}.project", spec["out"], width)))
            cin = blocks[-1][3]
        return stem, layer_units(sub, "lastConv", self.config["last"]), blocks

    def validate(self, sub):
        check_layer_names(sub, self.elastic_layers(), "mobilenetv2")
        self.plan(sub)

    def flops(self, sub):
        stem, last, blocks = self.plan(sub)
        size = -(-self.config["imageSize"] // self.stem_stride)
        f = 2 * 9 * self.config["inChannels"] * stem * size**2 + 4 * stem * size**2
        cin = stem
        for s, b, hidden, out in blocks:
            if self.config["stages"][s][b].get("expand", True):
                f += 2 * cin * hidden * size**2 + 4 * hidden * size**2
            size = -(-size // self.config["stages"][s][b]["stride"])
            f += 2 * 9 * hidden * size**2 + 4 * hidden * size**2 + 2 * hidden * out * size**2 + 4 * out * size**2
            cin = out
        f += 2 * cin * last * size**2 + 4 * last * size**2
        return f + last * size**2 + 2 * last * self.config["classes"]

    def forward(self, x, sub, ctx):
        stem, last, blocks = self.plan(sub)
        h = F.relu6(self.stemBn(self.stem(x, stem), ctx))
        for s, b, hidden, out in blocks:
            h = self.stages[s][b](h, hidden, out, ctx)
        h = F.relu6(self.lastBn(self.lastConv(h, last), ctx))
        return self.head(h.mean((2, 3)))


class MultiHeadAttention(nn.Module):
    """Head-blocked projections: head i owns columns [i·hd, (i+1)·hd) of q, k, v and rows of o,
    so the first h heads are a prefix slice. Grouped-query attention: k and v have `kv_heads`
    heads, each shared by heads/kv_heads consecutive query heads (sub-models keep whole groups)."""

    def __init__(self, dim, heads, head_dim, causal, dropout, name, bias=True, rope_base=None,
                 kv_heads=None, out_bias=None, rope_scaling=None):
        super().__init__()
        self.heads, self.head_dim, self.causal, self.dropout, self.name = heads, head_dim, causal, dropout, name
        self.rope_base, self.rope_scaling = rope_base, rope_scaling
        self.kv_heads = kv_heads or heads
        if heads % self.kv_heads:
            raise ValueError(f"{name}: {heads} heads cannot share {self.kv_heads} key/value heads; kvHeads must divide heads")
        self.group = heads // self.kv_heads
        inner = heads * head_dim
        self.q = Linear(dim, inner, bias, name=f"{name}.q")
        self.k = Linear(dim, self.kv_heads * head_dim, bias, name=f"{name}.k")
        self.v = Linear(dim, self.kv_heads * head_dim, bias, name=f"{name}.v")
        self.o = Linear(inner, dim, bias if out_bias is None else out_bias, name=f"{name}.o")

    def active_kv_heads(self, heads):
        check_units(heads, self.heads, self.name, "heads")
        if heads % self.group:
            raise ValueError(
                f"heads {heads} in '{self.name}' is not a whole number of key/value groups: {self.group} query heads "
                f"share each key/value head; use a multiple of {self.group}"
            )
        return heads // self.group

    def forward(self, x, heads, ctx):
        kv = self.active_kv_heads(heads)
        B, T, e = x.shape
        hd, width = self.head_dim, heads * self.head_dim

        def split(t, h):
            return t.reshape(B, T, h, hd).transpose(1, 2)  # [B, h, T, hd]

        q, k, v = split(self.q(x, width), heads), split(self.k(x, kv * hd), kv), split(self.v(x, kv * hd), kv)
        if self.rope_base is not None:
            q = apply_rotary(q, self.rope_base, scaling=self.rope_scaling)
            k = apply_rotary(k, self.rope_base, scaling=self.rope_scaling)
        if self.group > 1:  # query head i reads key/value head i // group
            k, v = k.repeat_interleave(self.group, 1), v.repeat_interleave(self.group, 1)
        att = q @ k.transpose(-1, -2) * (1 / hd**0.5)
        if self.causal:
            att = att + torch.triu(torch.full((T, T), -1e9, device=x.device), 1)  # the TypeScript side's additive mask
        att = torch.softmax(att, -1)
        if ctx.mode == "train" and self.dropout > 0:
            att = F.dropout(att, self.dropout)
        y = (att @ v).transpose(1, 2).reshape(B, T, width)
        return self.o(y, e)


class FeedForward(nn.Module):
    """up → activation → down with elastic hidden width; `swiglu`: down(silu(gate(x)) ⊙ up(x))."""

    def __init__(self, dim, hidden, activation, name, bias=True):
        super().__init__()
        self.activation = activation
        self.up = Linear(dim, hidden, bias, name=f"{name}.up")
        self.gate = Linear(dim, hidden, bias, name=f"{name}.gate") if activation == "swiglu" else None
        self.down = Linear(hidden, dim, bias, name=f"{name}.down")

    def forward(self, x, hidden):
        u = self.up(x, hidden)
        h = F.silu(self.gate(x, hidden)) * u if self.gate is not None else activate(u, self.activation)
        return self.down(h, x.shape[-1])


def _same_pads(x, kernel, stride):
    """F.pad's (left, right, top, bottom) for TensorFlow's 'same' on x's spatial size."""
    h, w = x.shape[-2:]
    ph = max((-(-h // stride) - 1) * stride + kernel - h, 0)
    pw = max((-(-w // stride) - 1) * stride + kernel - w, 0)
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


def per_block(v, layers, what):
    """A per-block config value as one value per block (a list must have one per layer)."""
    values = list(v) if isinstance(v, list) else [v] * layers
    if len(values) != layers:
        raise ValueError(f"transformer: {what} lists {len(values)} values for {layers} layers; give one per layer")
    return values


class TransformerBlock(nn.Module):
    """Pre-norm: x + attn(norm1(x)), then x + ffn(norm2(x)); GPT-style (LayerNorm, GELU, biases)
    or LLaMA-style (RMSNorm, SwiGLU, rotary positions, no biases)."""

    def __init__(self, c, name, heads, ffn, kv_heads=None):
        super().__init__()
        llama = c.get("arch") == "llama"
        self.dropout = c.get("dropout", 0) or 0
        eps = c.get("normEps", 1e-6 if llama else 1e-5)
        norm = RMSNorm if llama else LayerNorm
        self.ln1 = norm(c["dim"], f"{name}.ln1", eps)
        attn_bias = c.get("attnBias", "none") if llama else "all"
        self.attn = MultiHeadAttention(
            c["dim"], heads, c["headDim"], c["task"] == "lm", self.dropout, f"{name}.attn",
            bias=attn_bias != "none", rope_base=c.get("ropeBase", 10000) if llama else None,
            kv_heads=kv_heads, out_bias=attn_bias == "all", rope_scaling=c.get("ropeScaling") if llama else None,
        )
        self.ln2 = norm(c["dim"], f"{name}.ln2", eps)
        self.ffn = FeedForward(c["dim"], ffn, "swiglu" if llama else "gelu", f"{name}.ffn", bias=not llama)

    def forward(self, x, heads, ffn, ctx):
        p = self.dropout if ctx.mode == "train" else 0
        h = x + F.dropout(self.attn(self.ln1(x), heads, ctx), p)
        return h + F.dropout(self.ffn(self.ln2(h), ffn), p)


class Transformer(SortedModel):
    """Causal LM (tied embedding head) or encoder classifier (mean-pooled over non-padding tokens);
    elastic depth, heads, FFN width and embedding dim; one shared final norm and head. `arch`
    'gpt' (default: learned positions, LayerNorm, GELU, biases) or 'llama' (rotary positions with
    base `ropeBase`, RMSNorm, SwiGLU, no biases). Per-block widths: `blocks.i.ffn` / `blocks.i.attn`
    in a sub-model's layers; `ffn` / `heads` in the config may list one value per block."""

    family = "transformer"

    def __init__(self, config):
        super().__init__()
        c = self.config = config
        if c.get("arch", "gpt") not in ("gpt", "llama"):
            raise ValueError(f"transformer: arch '{c['arch']}' is not 'gpt' or 'llama'")
        llama = c.get("arch") == "llama"
        self.tokens = Embedding(c["vocab"], c["dim"], "tokens")
        # Learned positions ('gpt'); 'llama' rotates q and k instead.
        self.positions = None if llama else Embedding(c["maxLen"], c["dim"], "positions")
        self.full = list(zip(per_block(c["heads"], c["layers"], "heads"), per_block(c["ffn"], c["layers"], "ffn")))
        kv = per_block(c.get("kvHeads", [h for h, _ in self.full]), c["layers"], "kvHeads")
        self.layer_names = [f"blocks.{i}.{k}" for i in range(c["layers"]) for k in ("attn", "ffn")]
        self.blocks = nn.ModuleList(
            TransformerBlock(c, f"blocks.{i}", h, f, kv[i]) for i, (h, f) in enumerate(self.full)
        )
        eps = c.get("normEps", 1e-6 if llama else 1e-5)
        self.lnFinal = RMSNorm(c["dim"], "lnFinal", eps) if llama else LayerNorm(c["dim"], "lnFinal", eps)
        # An untied LM head (Hugging Face models with tie_word_embeddings false).
        self.lmHead = Linear(c["dim"], c["vocab"], False, name="lmHead") if c["task"] == "lm" and c.get("tiedHead", True) is False else None
        if c["task"] == "classify":
            if not c.get("classes") or c["classes"] < 2:
                raise ValueError("transformer: task classify needs classes >= 2")
            self.head = Linear(c["dim"], c["classes"], name="head")
        else:
            self.head = None  # tied to the token embedding

    @property
    def max_depth(self):
        return self.config["layers"]

    def plan(self, sub):
        """Depth, embedding units, and (heads, FFN units) per block: a per-block override, else the uniform budget."""
        c = self.config
        layers = sub.get("layers") or {}
        blocks = [
            (
                self._whole_groups(
                    i, check_units(layers.get(f"blocks.{i}.attn", sub.get("heads", h)), h, f"blocks.{i}.attn", "heads")
                ),
                layer_units(sub, f"blocks.{i}.ffn", f, sub.get("ffn", 1)),
            )
            for i, (h, f) in enumerate(self.full)
        ]
        return (
            check_depth(sub.get("depth"), 1, c["layers"], "transformer"),
            units_for(sub.get("embed", 1), c["dim"], 1, "transformer embed"),
            blocks,
        )

    def _whole_groups(self, i, heads):
        """`heads` of block i, checked to be whole key/value groups."""
        self.blocks[i].attn.active_kv_heads(heads)
        return heads

    def validate(self, sub):
        check_layer_names(sub, self.layer_names, "transformer")
        if sub.get("width") is not None:
            raise ValueError("transformer: use 'heads', 'ffn' and 'embed' instead of 'width'")
        self.plan(sub)

    def flops(self, sub):
        c = self.config
        depth, e, blocks = self.plan(sub)
        T, gate = c["maxLen"], c.get("arch") == "llama"
        f = 0
        for i, (heads, ffn) in enumerate(blocks[:depth]):
            inner = heads * c["headDim"]
            kv_inner = self.blocks[i].attn.active_kv_heads(heads) * c["headDim"]
            f += 4 * e * inner + 4 * e * kv_inner + 4 * T * inner + (6 if gate else 4) * e * ffn
        f += 2 * e * (c["classes"] if c["task"] == "classify" else c["vocab"])
        return f * T

    def forward(self, ids, sub, ctx):
        if ids.dim() != 2:
            raise ValueError(f"transformer: input must be token ids [B, T], got shape {list(ids.shape)}")
        depth, e, blocks = self.plan(sub)
        B, T = ids.shape
        if T > self.config["maxLen"]:
            raise ValueError(f"transformer: sequence length {T} > maxLen {self.config['maxLen']}")
        ids = ids.long()
        h = self.tokens(ids, e)
        if self.positions is not None:
            h = h + self.positions(torch.arange(T, device=ids.device), e)
        for i in range(depth):
            h = self.blocks[i](h, *blocks[i], ctx)
        hn = self.lnFinal(h)
        if self.head is None:
            return hn @ (self.lmHead if self.lmHead is not None else self.tokens).weight[:, :e].t()
        mask = (ids != self.config.get("padId", -1)).to(hn.dtype).unsqueeze(-1)
        pooled = (hn * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled)


FAMILIES = {"mlp": Mlp, "resnet": ResNet, "mobilenetv2": MobileNetV2, "transformer": Transformer}


def build_model(spec):
    """A model from checkpoint.json's `model` ({family, config}); weights are random until loaded."""
    family = spec.get("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family '{family}'; known: {', '.join(FAMILIES)}")
    return FAMILIES[family](spec["config"])
