"""Checkpoint-folder behaviours of sortednet_torch, printed as JSON for test/torch_checkpoint.test.ts:
saves into a run folder (pruning, `latest`), falls back when `latest` is gone, reads the flat
layout, refuses corrupt files and overwriting the current step."""
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sortednet_torch import build_model, list_checkpoints, load_checkpoint, resolve, save_checkpoint  # noqa: E402
from sortednet_torch.lock import RunLock  # noqa: E402


def main(run, locked):
    torch.manual_seed(0)
    spec = {"family": "mlp", "config": {"inputs": 4, "hidden": [3, 3], "classes": 2}}
    model = build_model(spec)
    out = {}
    extra = {"preprocess": {"classes": ["a", "b"]}, "extra_files": {"tokenizer.json": b'{"model": {}}'}}
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "run.json"), "w") as f:  # sealed in `latest` by the saves
        f.write(json.dumps({"model": "mlp", "data": {"name": "mnist", "trainSubset": 2000}}, indent=2) + "\n")
    for step in (1, 2, 3):
        out[f"saved{step}"] = save_checkpoint(run, model, {"depth": [1, 2]}, step, 7, **extra)
    back = load_checkpoint(run)
    out["extra"] = [back.meta["preprocess"], back.extra_files["tokenizer.json"].decode()]
    out["folders"] = [os.path.basename(f) for _, f in list_checkpoints(run)]
    out["resolved"] = resolve(run)
    with open(os.path.join(run, "checkpoints", "latest")) as f:
        out["latest"] = f.read()
    edited = run + "-edited"  # checkpoint.json edited by hand: refused, naming the field
    shutil.copytree(run, edited)
    meta_path = os.path.join(edited, "checkpoints", "step-000003", "checkpoint.json")
    with open(meta_path) as f:
        text = f.read()
    with open(meta_path, "w") as f:
        f.write(text.replace('"step": 3', '"step": 2'))
    try:
        load_checkpoint(edited)
    except ValueError as e:
        out["edited"] = str(e)
    try:
        save_checkpoint(run, model, {"depth": [1, 2]}, 3, 7)
    except FileExistsError as e:
        out["overwrite"] = str(e)
    os.remove(os.path.join(run, "checkpoints", "latest"))
    out["fallback"] = resolve(run)
    flat = run + "-flat"
    shutil.copytree(out["saved3"], flat)
    out["flat"] = load_checkpoint(flat).meta["step"]
    with open(os.path.join(flat, "model.safetensors"), "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x01")
    try:
        load_checkpoint(flat)
    except ValueError as e:
        out["corrupt"] = str(e)
    try:  # a run folder whose lock a live process (the test's) holds
        RunLock(locked, "layout_checks")
    except RuntimeError as e:
        out["locked"] = str(e)
    with RunLock(run, "layout_checks"):
        out["lockFile"] = os.path.exists(os.path.join(run, "run.lock"))
    out["lockReleased"] = not os.path.exists(os.path.join(run, "run.lock"))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
