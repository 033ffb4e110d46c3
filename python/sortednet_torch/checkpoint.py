"""sortednet checkpoints (docs/checkpoint-format.md) to and from PyTorch models.

A run folder holds `checkpoints/step-NNNNNN/` folders and `checkpoints/latest` (the name of the
current one, then the seals: the sha256 of each kept checkpoint.json and of run.json, so that an edit
of either is refused naming the field); older runs hold the files directly in the run folder (read
only), and a one-line `latest` (written before seals) is read unchecked. A checkpoint is
checkpoint.json + model.safetensors + bn_stats.safetensors [+ optimizer.safetensors]
[+ extra files], every file's sha256 recorded in checkpoint.json, and, once evaluated,
bn_calibrated.safetensors (BN statistics bound to the weights by their sha256). BN statistics are
named as the TypeScript side's state dict: `<module>.stats.<subId>.mean`, `.variance`, `.count`.

The files keep the TypeScript side's tensor layouts: convolutions [kh, kw, in, out], depthwise
[kh, kw, C, 1], linear [out, in]. PyTorch's are [out, in, kh, kw] and [C, 1, kh, kw]: this module
transposes at load and save, so models here use plain PyTorch layouts.
"""
import hashlib
import json
import os
import re
import secrets
import shutil
import struct
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch

from . import safetensors_io
from .models import build_model
from .nn import BatchNorm2d, Conv2d, DepthwiseConv2d

FORMAT = "sortednet-checkpoint/2"
FORMAT_1 = "sortednet-checkpoint/1"  # BN statistics named `<subId>|<module>.mean`; still read, never written
STATS_FIELDS = ("mean", "variance", "count")
CORE_FILES = ("model.safetensors", "bn_stats.safetensors", "optimizer.safetensors")
# model.safetensors' metadata, exactly as the TypeScript writer's: the file is then a pure function
# of the weights (evaluation binds its BN statistics to the weights by this file's sha256).
# Must equal the TypeScript writer's (src/io/checkpoint_codec.ts), byte for byte.
WEIGHTS_METADATA = {
    "format": "pt",
    "producer": "sortednet",
    "sortednet.layout": "conv kh,kw,in,out (HWIO); depthwise kh,kw,channels,1; linear out,in",
}


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


CHECKPOINTS, LATEST, CALIBRATION_FILE = "checkpoints", "latest", "bn_calibrated.safetensors"
STEP_FOLDER = re.compile(r"^step-(\d+)$")
TMP_NAME = re.compile(r"\.tmp-[0-9a-f]+$")  # the TypeScript side's leftovers pattern (removeStale)
DEFAULT_KEEP = 2


def list_checkpoints(run_dir):
    """[(step, folder)] of the complete step folders (those with checkpoint.json), oldest first."""
    root = os.path.join(run_dir, CHECKPOINTS)
    if not os.path.isdir(root):
        return []
    out = []
    for name in os.listdir(root):
        m = STEP_FOLDER.match(name)
        if m and os.path.isfile(os.path.join(root, name, "checkpoint.json")):
            out.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(out)


# ---- Seals (src/io/seal.ts): `latest` names the current step folder and records the sha256 of the
# JSON files (checkpoint.json of each kept step folder, ../run.json), each with a short digest per
# field, so that an edit of one is refused naming the field. Both implementations write it alike.
RUN_CONFIG_SEAL = "../run.json"
_SEAL_LINE = re.compile(r"^([0-9a-f]{64})  (step-\d+/checkpoint\.json|\.\./run\.json)$")
_FIELDS_LINE = re.compile(r"^fields (\S+) (-|[0-9a-f]{8}(?:,[0-9a-f]{8})*)$")
_KEY = re.compile(r'^( *)("(?:[^"\\]|\\.)*"): ')


def _key_at(line, depth):
    m = _KEY.match(line)
    if not m or len(m.group(1)) != 2 * depth:
        return None
    try:
        return json.loads(m.group(2))
    except ValueError:
        return None


def _indent(line):
    return len(line) - len(line.lstrip())


def field_spans(text):
    """[(name, depth, digest)]: every key at depth 1 and 2 of a JSON file written with 2-space
    indentation, each with the first 8 hex digits of the sha256 of its lines (trailing comma dropped)."""
    lines = text.split("\n")
    out, parent = [], ""
    for i, line in enumerate(lines):
        depth = 1 if _key_at(line, 1) is not None else 2 if _key_at(line, 2) is not None else 0
        if not depth:
            continue
        key = _key_at(line, depth)
        if depth == 1:
            parent = key
        indent, j = 2 * depth, i + 1
        while j < len(lines) and (
            _indent(lines[j]) > indent
            or (_indent(lines[j]) == indent and not re.match(r'^ *"', lines[j]) and lines[j].strip() != "")
        ):
            j += 1
        span = "\n".join(lines[i:j])
        span = span[:-1] if span.endswith(",") else span
        out.append((key if depth == 1 else f"{parent}.{key}", depth, sha256_hex(span.encode("utf-8"))[:8]))
    return out


def _seal_of(path, data):
    return {"path": path, "sha256": sha256_hex(data),
            "fields": [d for _, _, d in field_spans(data.decode("utf-8", errors="replace"))]}


def _matches(data, seal):
    """The sha256 decides (the field digests only name what changed; `latest` checks itself)."""
    return sha256_hex(data) == seal["sha256"]


def _end_line(body):
    return f"end {sha256_hex(body.encode('utf-8'))[:16]}\n"


def _format_latest(name, seals):
    if not seals:
        return name + "\n"
    lines = [name] + [f"{s['sha256']}  {s['path']}" for s in seals]
    lines += [f"fields {s['path']} {','.join(s['fields']) or '-'}" for s in seals]
    body = "\n".join(lines) + "\n"
    return body + _end_line(body)  # `latest` seals itself too


def _parse_latest(text, where):
    """(name, seals) of `latest`'s text; strict, as the TypeScript reader (a damaged one is refused)."""
    def bad(why):
        return ValueError(f"{where} is damaged ({why}); it seals the current checkpoint, so nothing was loaded. "
                          "Restore it, or delete it to fall back to the newest complete checkpoint unchecked")
    if STEP_FOLDER.match(text.strip()):  # before seals: the name alone
        return text.strip(), []
    lines = text.split("\n")
    if len(lines) < 2 or lines[-1] != "":
        raise bad("it does not end with a newline")
    lines.pop()
    name = lines[0]
    if not STEP_FOLDER.match(name):
        raise bad(f"line 1 is {json.dumps(name)}, not a step folder's name")
    body = text[: len(text) - (len(lines[-1]) + 1)]
    if len(lines) < 2 or lines[-1] + "\n" != _end_line(body):
        raise bad("its last line is not the hash of the lines above it")
    lines.pop()
    seals, i = [], 1
    while i < len(lines) and not lines[i].startswith("fields "):
        m = _SEAL_LINE.match(lines[i])
        if not m:
            raise bad(f"line {i + 1} is not '<sha256>  <file>'")
        seals.append({"sha256": m.group(1), "path": m.group(2), "fields": []})
        i += 1
    if len(lines) - i != len(seals):
        raise bad("it has not one fields line per sealed file")
    for k, s in enumerate(seals):
        m = _FIELDS_LINE.match(lines[i + k])
        if not m or m.group(1) != s["path"]:
            raise bad(f"line {i + k + 1} is not 'fields {s['path']} <digests>'")
        s["fields"] = [] if m.group(2) == "-" else m.group(2).split(",")
    if not seals or seals[0]["path"] != f"{name}/checkpoint.json":
        raise bad(f"it names {name} but seals {seals[0]['path'] if seals else 'nothing'}")
    if _format_latest(name, seals) != text:
        raise bad("its lines are not in the form sortednet writes")
    return name, seals


def _read_latest_full(root):
    """(name, seals), or None when `latest` is missing or empty; raises when it is damaged."""
    try:
        with open(os.path.join(root, LATEST), encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.strip():
        return None
    return _parse_latest(text, os.path.join(root, LATEST))


def _read_latest(root):
    latest = _read_latest_full(root)
    return latest[0] if latest else None


def _describe_change(text, seal):
    try:
        json.loads(text)
    except ValueError as e:
        return f"it is not valid JSON any more ({e})"
    spans = field_spans(text)
    if len(spans) != len(seal["fields"]):
        if not seal["fields"]:
            return "changed since it was sealed"
        return f"fields were added, removed or re-indented ({len(spans)} found, {len(seal['fields'])} sealed)"
    changed = [s[2] != d for s, d in zip(spans, seal["fields"])]
    named = [s[0] for k, s in enumerate(spans) if changed[k] and (s[1] == 2 or not any(
        changed[c] and spans[c][1] == 2 and spans[c][0].startswith(s[0] + ".") for c in range(len(spans))))]
    if not named:
        return "changed outside its fields (brackets or spacing)"
    return ("field " if len(named) == 1 else "fields ") + ", ".join(f"'{n}'" for n in named) + " changed since it was sealed"


def _verify_sealed(folder, data):
    """Checks a step folder's checkpoint.json bytes against its seal in ../latest (if sealed)."""
    root = os.path.dirname(os.path.abspath(folder))
    if os.path.basename(root) != CHECKPOINTS or not STEP_FOLDER.match(os.path.basename(os.path.abspath(folder))):
        return
    latest = _read_latest_full(root)
    if not latest or not latest[1]:
        return
    path = f"{os.path.basename(os.path.abspath(folder))}/checkpoint.json"
    seal = next((s for s in latest[1] if s["path"] == path), None)
    if seal is None:
        print(f"{os.path.join(folder, 'checkpoint.json')} is not sealed by {os.path.join(root, LATEST)}; "
              "its content is not checked", file=sys.stderr)
        return
    if _matches(data, seal):
        return
    where, latest_path = os.path.join(folder, "checkpoint.json"), os.path.join(root, LATEST)
    raise ValueError(
        f"{where} does not match its seal in {latest_path}: {_describe_change(data.decode('utf-8', errors='replace'), seal)}; "
        f"not loading. If you edited it on purpose, run 'sortednet seal --run {os.path.dirname(root)}' to accept the edit; otherwise restore it")


def _run_config_seals(run_dir, prev_seals):
    """run.json's seals for a new `latest` (as the TypeScript runConfigSeals): its current content,
    unless it was edited since it was last sealed (the edit stays noticeable)."""
    sealed = [s for s in prev_seals if s["path"] == RUN_CONFIG_SEAL]
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        return sealed
    with open(path, "rb") as f:
        data = f.read()
    if sealed and not any(_matches(data, s) for s in sealed):
        return sealed
    return [_seal_of(RUN_CONFIG_SEAL, data)]
# ---- End of seals


def resolve(path):
    """The folder holding the current checkpoint: the step folder `checkpoints/latest` names, else
    (with a warning) the newest complete one; a step folder or a flat-layout run as itself."""
    root = os.path.join(path, CHECKPOINTS)
    complete = list_checkpoints(path)
    if not complete:
        if os.path.isfile(os.path.join(path, "checkpoint.json")):
            return path
        raise FileNotFoundError(
            f"no complete checkpoint in {root} (the first save was interrupted?); train again, or check --run"
            if os.path.isdir(root)
            else f"no checkpoint in {path}: neither {root}/ nor {os.path.join(path, 'checkpoint.json')} found (train first, or check --run)"
        )
    latest = _read_latest(root)
    for step, folder in complete:
        if os.path.basename(folder) == latest:
            return folder
    print(
        f"{os.path.join(root, LATEST)} is missing, unreadable or names an incomplete folder; "
        f"using the newest complete checkpoint, {os.path.basename(complete[-1][1])}",
        file=sys.stderr,
    )
    return complete[-1][1]


def read_meta(path):
    """checkpoint.json of a run or checkpoint folder, checked; returns (meta, folder)."""
    folder = resolve(path)
    where = os.path.join(folder, "checkpoint.json")
    with open(where, "rb") as f:
        data = f.read()
    _verify_sealed(folder, data)
    text = data.decode("utf-8")
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise ValueError(f"checkpoint {where} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint {where}: expected a JSON object")
    if meta.get("format") not in (FORMAT, FORMAT_1):
        raise ValueError(f"checkpoint {where}: format '{meta.get('format')}' is not '{FORMAT}' (or the older '{FORMAT_1}'); a newer sortednet wrote it?")
    if not isinstance(meta.get("files"), dict) or not isinstance(meta.get("model"), dict):
        raise ValueError(f"checkpoint {where}: 'files' or 'model' is missing")
    return meta, folder


def _data_of(data):
    """The tensor bytes of a safetensors file (after the header)."""
    (n,) = struct.unpack("<Q", data[:8])
    return data[8 + n :]


# ---- Migration from format 1: BN statistics named `<subId>|<module>.mean` / `.variance`, the batch
# counts in the metadata under `<subId>|<module>`; renamed to `<module>.stats.<subId>.<field>`.
def _from_format1_stats(tensors, metadata, where):
    if not any("|" in n for n in tensors):
        return tensors
    out = {}
    for name, t in tensors.items():
        key, _, rest = name.partition("|")
        module, _, field = rest.rpartition(".")
        if not rest or field not in ("mean", "variance"):
            raise ValueError(f"{where}: '{name}' is not a BN statistic '<subId>|<module>.mean' or '.variance'")
        out[f"{module}.stats.{key}.{field}"] = t
        out[f"{module}.stats.{key}.count"] = np.array(int(metadata.get(f"{key}|{module}", 1)), dtype=np.int32)
    return out
# ---- End of the migration


def _set_bn_stats(bns, tensors, metadata, where):
    """Sets (replacing) the statistics a file holds: `<module>.stats.<subId>.mean/.variance/.count`,
    each BatchNorm's path stripped, the sub-model id and field split at the last dot."""
    groups = {}
    for name, t in _from_format1_stats(tensors, metadata, where).items():
        mod = next((m for m in bns if name.startswith(f"{m}.stats.")), None)
        key, _, field = name[len(f"{mod}.stats."):].rpartition(".") if mod is not None else ("", "", "")
        if mod is None or not key or field not in STATS_FIELDS:
            raise KeyError(f"{where}: '{name}' is not the statistic (mean, variance, count) of a BatchNorm of the model")
        groups.setdefault((mod, key), {})[field] = t
    for (mod, key), f in groups.items():
        missing = [x for x in STATS_FIELDS if x not in f]
        if missing:
            raise KeyError(f"{where}: '{mod}.stats.{key}.{missing[0]}' is missing (BatchNorm statistics need {', '.join(STATS_FIELDS)})")
        mean, var, count = (f[x] for x in STATS_FIELDS)
        if mean.ndim != 1 or not 1 <= mean.shape[0] <= bns[mod].channels or var.shape != mean.shape:
            raise ValueError(f"{where}: '{mod}.stats.{key}.mean' has shape {list(mean.shape)} (variance {list(var.shape)}), BatchNorm '{mod}' has {bns[mod].channels} channels")
        if count.shape != () or int(count) < 1:
            raise ValueError(f"{where}: '{mod}.stats.{key}.count' must be an int32 scalar >= 1")
        bns[mod].stats[key] = (torch.from_numpy(mean), torch.from_numpy(var), int(count))


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


def load_checkpoint(path, skip_optimizer=False, calibrated=True):
    """Builds the model from checkpoint.json and fills weights, per-sub-model BN statistics and
    (unless skipped) optimizer state, verifying every file's sha256. With `calibrated` (default),
    the statistics evaluation stored in bn_calibrated.safetensors replace the saved ones;
    resuming training passes False, to hold exactly what training saved."""
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
    _set_bn_stats(bns, bn_tensors, bn_meta, f"{folder}/bn_stats.safetensors")
    cal_path = os.path.join(folder, CALIBRATION_FILE)
    if calibrated and os.path.isfile(cal_path):
        with open(cal_path, "rb") as f:
            data = f.read()
        tensors, cal_meta = safetensors_io.decode(data, cal_path)
        if cal_meta.get("sortednet.weights_sha256") != meta["files"]["model.safetensors"]:
            raise ValueError(f"{cal_path} was calibrated for other weights than {folder}/model.safetensors; "
                             "delete it and run 'sortednet eval' again")
        if cal_meta.get("sortednet.data_sha256") != sha256_hex(_data_of(data)):
            raise ValueError(f"{cal_path} is corrupt (its data does not match its hash); delete it and run 'sortednet eval' again")
        _set_bn_stats(bns, tensors, cal_meta, cal_path)
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


def _encode_bn_stats(model, metadata=None):
    bn = {}
    for mname, m in model.named_modules():
        if isinstance(m, BatchNorm2d):
            for key, (mean, var, count) in m.stats.items():
                bn[f"{mname}.stats.{key}.mean"] = mean.detach().cpu().float().numpy()
                bn[f"{mname}.stats.{key}.variance"] = var.detach().cpu().float().numpy()
                bn[f"{mname}.stats.{key}.count"] = np.array(count, dtype=np.int32)
    return safetensors_io.encode(bn, metadata)


def encode_checkpoint(model, grid, step, seed, train=None, dataset=None, preprocess=None,
                      optimizer_state=None, extra_files=None, optimizer_step=None):
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
        WEIGHTS_METADATA,
    )
    files["bn_stats.safetensors"] = _encode_bn_stats(model)
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
        "optimizerStep": optimizer_step if optimizer_step is not None and optimizer_step != step else None,
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


def _tmp_name(path):
    return f"{path}.tmp-{secrets.token_hex(4)}"


def _remove_tree(path):
    """Renamed first, so it is never seen half-deleted."""
    tmp = _tmp_name(path)
    os.replace(path, tmp)
    _fsync_dir(os.path.dirname(path))
    shutil.rmtree(tmp, ignore_errors=True)


def _write_atomic(path, data):
    tmp = _tmp_name(path)
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(os.path.dirname(path))


def save_checkpoint(run_dir, model, grid, step, seed, keep=DEFAULT_KEEP, **kw):
    """Saves a checkpoint as a new step folder and makes it current; returns the folder.

    As the TypeScript side: the files go into `checkpoints/step-NNNNNN.tmp-XXXX/`, each fsynced,
    the folder is renamed into place, `checkpoints/latest` is replaced atomically (temporary file,
    fsync, rename), and only then are old folders pruned (the newest `keep` are kept; folders of
    later steps belong to an abandoned history). A kill at any moment leaves `latest` naming a
    complete checkpoint.
    """
    if not (isinstance(keep, int) and keep >= 1):
        raise ValueError(f"save_checkpoint: keep must be an integer >= 1, got {keep}")
    root = os.path.join(run_dir, CHECKPOINTS)
    os.makedirs(root, exist_ok=True)
    name = step_folder_name(step)
    final = os.path.join(root, name)
    prev = _read_latest_full(root)
    prev_name, prev_seals = prev if prev else (None, [])
    if os.path.exists(final) and prev_name == name:
        raise FileExistsError(f"{final} already holds the current checkpoint (step {step}); not overwriting it")
    _, files = encode_checkpoint(model, grid, step, seed, **kw)
    tmp = _tmp_name(final)
    os.makedirs(tmp)
    for f in [f for f in files if f != "checkpoint.json"] + ["checkpoint.json"]:
        _write_synced(os.path.join(tmp, f), files[f])
    _fsync_dir(tmp)
    if os.path.exists(final):  # a leftover of an interrupted save: `latest` does not name it
        _remove_tree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    complete = list_checkpoints(run_dir)
    older = [f for s, f in complete if s < step]
    kept = older[max(0, len(older) - (keep - 1)):]
    # `latest` seals the new checkpoint.json, those of the kept folders as they were sealed, and run.json.
    seals = [_seal_of(f"{name}/checkpoint.json", files["checkpoint.json"])]
    for f in reversed(kept):
        seals += [s for s in prev_seals if s["path"] == f"{os.path.basename(f)}/checkpoint.json"]
    seals += _run_config_seals(run_dir, prev_seals)
    _write_atomic(os.path.join(root, LATEST), _format_latest(name, seals).encode())
    for f in older[: max(0, len(older) - (keep - 1))] + [f for s, f in complete if s > step]:
        _remove_tree(f)
    return final


def remove_stale(run_dir):
    """Removes what interrupted writes left (`*.tmp-<hex>` in the run folder and checkpoints/, step
    folders without checkpoint.json); call it only while holding the run folder's lock."""
    removed = []
    for d in (run_dir, os.path.join(run_dir, CHECKPOINTS)):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            path = os.path.join(d, name)
            complete = os.path.isfile(os.path.join(path, "checkpoint.json"))
            incomplete = d != run_dir and STEP_FOLDER.match(name) and not complete
            if not (TMP_NAME.search(name) or incomplete):
                continue
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(path)
    return removed


def save_calibration(run_dir, model):
    """Stores the model's (recalibrated) BN statistics as bn_calibrated.safetensors beside the
    current checkpoint, bound to its weights by their sha256; the checkpoint's files stay as they are."""
    meta, folder = read_meta(run_dir)
    saved, _ = safetensors_io.decode(_read_verified(folder, "model.safetensors", meta), f"{folder}/model.safetensors")
    layout = _file_layout(model)
    for name, p in model.named_parameters():
        t = p.detach().cpu()
        if name not in saved or not np.array_equal((layout[name][0](t) if name in layout else t).numpy(), saved[name]):
            raise ValueError(f"the model's weights are not those of {folder} ('{name}' differs); not storing its BN statistics there")
    unbound = _encode_bn_stats(model)
    data = _encode_bn_stats(model, {
        "sortednet.weights_sha256": meta["files"]["model.safetensors"],
        "sortednet.data_sha256": sha256_hex(_data_of(unbound)),
        "sortednet.step": str(meta["step"]),
    })
    path = os.path.join(folder, CALIBRATION_FILE)
    _write_atomic(path, data)
    return path


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
