"""sortednet checkpoints (docs/checkpoint-format.md) to and from PyTorch models.

A run folder holds `checkpoints/step-NNNNNN/` folders and `checkpoints/latest` (the name of the
current one); older runs hold the files directly in the run folder (read, and continued in that
layout). A checkpoint is checkpoint.json + model.safetensors + bn_stats.safetensors
[+ optimizer.safetensors] [+ extra files], every file's sha256 recorded in checkpoint.json.

The files keep the TypeScript side's tensor layouts: convolutions [kh, kw, in, out], depthwise
[kh, kw, C, 1], linear [out, in]. PyTorch's are [out, in, kh, kw] and [C, 1, kh, kw]: this module
transposes at load and save, so models here use plain PyTorch layouts.
"""
import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch

from . import safetensors_io
from .models import build_model
from .nn import BatchNorm2d, Conv2d, DepthwiseConv2d

FORMAT = "sortednet-checkpoint/1"
CORE_FILES = ("model.safetensors", "bn_stats.safetensors", "optimizer.safetensors")
# What the safetensors metadata says about layouts, so a reader need not guess.
LAYOUT_METADATA = {"conv_layout": "kh,kw,in,out", "depthwise_layout": "kh,kw,channels,1", "linear_layout": "out,in"}


def _file_layout(model):
    """{parameter name: (to_file, to_torch)} for parameters whose layout differs from PyTorch's."""
    out = {}
    for mname, m in model.named_modules():
        if isinstance(m, Conv2d):  # [out, in, kh, kw] <-> [kh, kw, in, out]
            out[f"{mname}.weight"] = (lambda t: t.permute(2, 3, 1, 0), lambda t: t.permute(3, 2, 0, 1))
        elif isinstance(m, DepthwiseConv2d):  # [C, 1, kh, kw] <-> [kh, kw, C, 1]
            out[f"{mname}.weight"] = (lambda t: t.permute(2, 3, 0, 1), lambda t: t.permute(2, 3, 0, 1))
    return out


def _base_param(key, names):
    """`blocks.0.q.weight.m` → `blocks.0.q.weight` (optimizer state is keyed by parameter + suffix)."""
    base = key.rsplit(".", 1)[0]
    return base if base in names else None


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def resolve(path):
    """The folder holding checkpoint.json: `path` itself (a step folder, or a run in the flat
    layout), else the step folder that `path/checkpoints/latest` names."""
    if os.path.isfile(os.path.join(path, "checkpoint.json")):
        return path
    latest = os.path.join(path, "checkpoints", "latest")
    if os.path.isfile(latest):
        with open(latest, encoding="utf-8") as f:
            name = f.read().strip()
        step_dir = os.path.join(path, "checkpoints", name)
        if not name or not os.path.isfile(os.path.join(step_dir, "checkpoint.json")):
            raise FileNotFoundError(f"checkpoint {latest} names '{name}', but {step_dir}/checkpoint.json does not exist")
        return step_dir
    raise FileNotFoundError(
        f"no checkpoint in {path}: neither {path}/checkpoint.json nor {latest} exists (train first, or check --run)"
    )


def read_meta(path):
    """checkpoint.json of a run or checkpoint folder, checked; returns (meta, folder)."""
    folder = resolve(path)
    where = os.path.join(folder, "checkpoint.json")
    with open(where, encoding="utf-8") as f:
        text = f.read()
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise ValueError(f"checkpoint {where} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint {where}: expected a JSON object")
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {where}: format '{meta.get('format')}' is not '{FORMAT}'")
    if not isinstance(meta.get("files"), dict) or not isinstance(meta.get("model"), dict):
        raise ValueError(f"checkpoint {where}: 'files' or 'model' is missing")
    return meta, folder


def _read_verified(folder, name, meta):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {folder}: {name} is missing")
    with open(path, "rb") as f:
        data = f.read()
    if sha256_hex(data) != meta["files"].get(name):
        raise ValueError(f"checkpoint {folder}: {name} does not match checkpoint.json (corrupt, or from another save); not loading")
    return data


@dataclass
class Checkpoint:
    meta: dict
    model: torch.nn.Module
    folder: str
    #: optimizer state by the TypeScript names (`<param>.m`, `.v`, `.buf`), in PyTorch layouts
    optimizer_state: dict = field(default_factory=dict)
    #: verified bytes of files beyond weights, BN statistics and optimizer (e.g. tokenizer.json)
    extra_files: dict = field(default_factory=dict)


def load_checkpoint(path, skip_optimizer=False):
    """Builds the model from checkpoint.json and fills weights, per-sub-model BN statistics and
    (unless skipped) optimizer state, verifying every file's sha256."""
    meta, folder = read_meta(path)
    model = build_model(meta["model"])
    weights, _ = safetensors_io.decode(_read_verified(folder, "model.safetensors", meta), f"{folder}/model.safetensors")
    layout = _file_layout(model)
    params = dict(model.named_parameters())
    for name, p in params.items():
        if name not in weights:
            raise KeyError(f"checkpoint {folder}: parameter '{name}' is missing")
        t = torch.from_numpy(weights[name])
        if name in layout:
            t = layout[name][1](t)
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError(f"checkpoint {folder}: '{name}' has shape {list(t.shape)}, model expects {list(p.shape)}")
        with torch.no_grad():
            p.copy_(t)
    bn_tensors, bn_meta = safetensors_io.decode(
        _read_verified(folder, "bn_stats.safetensors", meta), f"{folder}/bn_stats.safetensors"
    )
    bns = {n: m for n, m in model.named_modules() if isinstance(m, BatchNorm2d)}
    for m in bns.values():
        m.stats = {}
    for name, t in bn_tensors.items():
        if not name.endswith(".mean") or "|" not in name:
            continue
        key, mod = name[: -len(".mean")].rsplit("|", 1)
        var = bn_tensors.get(f"{key}|{mod}.variance")
        if mod not in bns or var is None:
            raise KeyError(f"checkpoint {folder}: BN statistics '{name}' match no BatchNorm of the model")
        bns[mod].stats[key] = (torch.from_numpy(t), torch.from_numpy(var), int(bn_meta.get(f"{key}|{mod}", 1)))
    ck = Checkpoint(meta=meta, model=model, folder=folder)
    if "optimizer.safetensors" in meta["files"] and not skip_optimizer:
        state, _ = safetensors_io.decode(
            _read_verified(folder, "optimizer.safetensors", meta), f"{folder}/optimizer.safetensors"
        )
        for k, a in state.items():
            t = torch.from_numpy(a)
            base = _base_param(k, params)
            ck.optimizer_state[k] = layout[base][1](t).contiguous() if base in layout else t
    for f in meta["files"]:
        if f not in CORE_FILES and f != "checkpoint.json":
            ck.extra_files[f] = _read_verified(folder, f, meta)
    return ck


def encode_checkpoint(model, grid, step, seed, train=None, dataset=None, preprocess=None,
                      optimizer_state=None, extra_files=None):
    """The checkpoint as {file name: bytes}, checkpoint.json (with every other file's hash) among them."""
    layout = _file_layout(model)
    params = dict(model.named_parameters())

    def to_file(name, t, base=None):
        t = t.detach().to("cpu", torch.float32)
        base = base or name
        return np.ascontiguousarray((layout[base][0](t) if base in layout else t).numpy())

    files = {}
    files["model.safetensors"] = safetensors_io.encode(
        {n: to_file(n, p) for n, p in params.items()},
        {"format": "pt", "producer": "sortednet-torch", **LAYOUT_METADATA},
    )
    bn, counts = {}, {}
    for mname, m in model.named_modules():
        if isinstance(m, BatchNorm2d):
            for key, (mean, var, count) in m.stats.items():
                bn[f"{key}|{mname}.mean"] = mean.detach().cpu().float().numpy()
                bn[f"{key}|{mname}.variance"] = var.detach().cpu().float().numpy()
                counts[f"{key}|{mname}"] = str(count)
    files["bn_stats.safetensors"] = safetensors_io.encode(bn, counts)
    if optimizer_state:
        files["optimizer.safetensors"] = safetensors_io.encode(
            {k: to_file(k, t, _base_param(k, params)) for k, t in optimizer_state.items()}
        )
    for name, data in (extra_files or {}).items():
        files[name] = bytes(data)
    meta = {
        "format": FORMAT,
        "model": {"family": model.family, "config": model.config},
        "grid": grid,
        "train": train,
        "step": step,
        "seed": seed,
        "dataset": dataset,
        "preprocess": preprocess,
        "files": {f: sha256_hex(b) for f, b in files.items()},
        "createdAt": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    files["checkpoint.json"] = (json.dumps({k: v for k, v in meta.items() if v is not None}, indent=2) + "\n").encode()
    return meta, files


def _write_synced(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def step_folder_name(step):
    return f"step-{step:06d}"


def save_checkpoint(run_dir, model, grid, step, seed, layout=None, **kw):
    """Writes a checkpoint into a run folder and returns the folder holding it.

    Layout 'steps' (new runs): a fresh `checkpoints/step-NNNNNN/` is written under a temporary
    name, every file fsynced, renamed into place, then `checkpoints/latest` is replaced atomically
    (temporary file, fsync, rename): a crash at any point leaves the previous checkpoint current.
    Layout 'flat' (runs that already hold checkpoint.json at the top): each file atomically,
    checkpoint.json last. By default the run's existing layout is kept.
    """
    _, files = encode_checkpoint(model, grid, step, seed, **kw)
    if layout is None:
        layout = "flat" if os.path.isfile(os.path.join(run_dir, "checkpoint.json")) else "steps"
    os.makedirs(run_dir, exist_ok=True)
    if layout == "flat":
        for name in [f for f in files if f != "checkpoint.json"] + ["checkpoint.json"]:
            tmp = os.path.join(run_dir, f"{name}.tmp-{secrets.token_hex(4)}")
            _write_synced(tmp, files[name])
            os.replace(tmp, os.path.join(run_dir, name))
        _fsync_dir(run_dir)
        return run_dir
    if layout != "steps":
        raise ValueError(f"checkpoint layout '{layout}' is not 'steps' or 'flat'")
    root = os.path.join(run_dir, "checkpoints")
    os.makedirs(root, exist_ok=True)
    name = step_folder_name(step)
    tmp_dir = os.path.join(root, f".{name}.tmp-{secrets.token_hex(4)}")
    os.makedirs(tmp_dir)
    for f in [f for f in files if f != "checkpoint.json"] + ["checkpoint.json"]:
        _write_synced(os.path.join(tmp_dir, f), files[f])
    _fsync_dir(tmp_dir)
    final = os.path.join(root, name)
    if os.path.exists(final):  # the same step written again (e.g. after recalibration): swap it out
        old = os.path.join(root, f".{name}.old-{secrets.token_hex(4)}")
        os.replace(final, old)
        os.replace(tmp_dir, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp_dir, final)
    tmp = os.path.join(root, f"latest.tmp-{secrets.token_hex(4)}")
    _write_synced(tmp, (name + "\n").encode())
    os.replace(tmp, os.path.join(root, "latest"))
    _fsync_dir(root)
    return final


@torch.no_grad()
def calibrate_bn(model, batches, subs):
    """Recomputes each sub-model's BN statistics as the cumulative average over `batches`
    (as the TypeScript side does before evaluating); `subs` is [(id, sub)]."""
    from .nn import Ctx

    bns = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    if not bns:
        return
    for key, sub in subs:
        for m in bns:
            m.stats.pop(key, None)
        for x in batches:
            model(x, sub, Ctx("calibrate", key))
