"""The TypeScript CLI's image model presets (`sortednet presets`), so a run.json naming one can be
started here too. Sized for 28×28 images. test/torch_presets.test.ts holds them equal to the
TypeScript ones, for every preset of a family this package builds."""
import math


def resnet_config(in_channels, image_size, classes, stem, widths, blocks):
    cin, stages = stem, []
    for s, w in enumerate(widths):
        stage = []
        for b in range(blocks[s]):
            stride = 2 if b == 0 and s > 0 else 1
            stage.append({"mid": w, "out": w, "stride": stride, "projection": stride != 1 or cin != w})
            cin = w
        stages.append(stage)
    return {"inChannels": in_channels, "imageSize": image_size, "classes": classes, "stem": stem, "stages": stages}


def mobilenet_v2_config(in_channels, image_size, classes, stem, rows, last):
    cin, stages = stem, []
    for t, c, n, s in rows:
        stage = []
        for b in range(n):
            stride = s if b == 0 else 1
            stage.append({"hidden": cin * t, "out": c, "stride": stride, "residual": stride == 1 and cin == c})
            cin = c
        stages.append(stage)
    return {"inChannels": in_channels, "imageSize": image_size, "classes": classes, "stem": stem,
            "stages": stages, "last": last}


def _tabular(ch, size, k):
    inputs = ch * size**2
    hidden = min(256, max(32, 2 ** math.ceil(math.log2(4 * inputs))))
    return {"family": "mlp", "config": {"inputs": inputs, "hidden": [hidden] * 4, "classes": k}}


def _sixteenths():
    return [(i + 1) / 16 for i in range(16)]


PRESETS = {
    "resnet-small": (
        lambda ch, size, k: {"family": "resnet", "config": resnet_config(ch, size, k, 16, [16, 32, 64], [2, 2, 2])},
        {"depth": [3, 4, 5, 6], "width": [0.25, 0.5, 0.75, 1]},
    ),
    "resnet-160": (
        lambda ch, size, k: {"family": "resnet", "config": resnet_config(ch, size, k, 16, [16, 32], [6, 5])},
        {"depth": list(range(2, 12)), "width": _sixteenths()},
    ),
    "mlp": (
        lambda ch, size, k: {"family": "mlp", "config": {"inputs": ch * size**2, "hidden": [256] * 4, "classes": k}},
        {"depth": [1, 2, 3, 4], "width": [0.25, 0.5, 0.75, 1]},
    ),
    "tabular": (_tabular, {"depth": [1, 2, 3, 4], "width": [0.25, 0.5, 0.75, 1]}),
    "mlp-160": (
        lambda ch, size, k: {"family": "mlp", "config": {"inputs": ch * size**2, "hidden": [256] * 10, "classes": k}},
        {"depth": list(range(1, 11)), "width": _sixteenths()},
    ),
    "mobilenetv2": (
        lambda ch, size, k: {
            "family": "mobilenetv2",
            "config": mobilenet_v2_config(ch, size, k, 16, [[1, 16, 1, 1], [4, 24, 2, 2], [4, 32, 3, 2]], 128),
        },
        {"depth": [3, 4, 5, 6], "width": [0.5, 1], "expand": [0.5, 1]},
    ),
}


def model_and_grid(run, channels, size, classes):
    """run.json's model (a preset name or a {family, config} spec) and grid."""
    m = run.get("model", "resnet-small")
    if isinstance(m, str):
        if m not in PRESETS:
            raise ValueError(f"unknown model preset '{m}'; known: {', '.join(PRESETS)}")
        build, grid = PRESETS[m]
        return build(channels, size, classes), run.get("grid") or grid
    if not run.get("grid"):
        raise ValueError("a run config with an explicit model spec needs a grid")
    return m, run["grid"]
