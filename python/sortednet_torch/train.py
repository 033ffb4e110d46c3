"""Sorted training with DistributedDataParallel: continues (or starts) a sortednet run.

    torchrun --nproc_per_node 4 -m sortednet_torch.train --run runs/resnet
    python -m sortednet_torch.train --run runs/resnet          # one process, no DDP
    python -m sortednet_torch.train --run runs/soft --init-from runs/imported --strategy sorted --steps 200

`--init-from` starts a new run from a trained model: a sortednet run folder (its latest checkpoint)
or a Hugging Face model folder (config.json + safetensors + tokenizer.json, read as
`python -m sortednet_torch.hf_import` does). The weights are loaded, the optimizer starts fresh at
step 0, and any strategy fine-tunes it: for an LM, `sorted` trains every exit through the shared
final norm and head (sorted fine-tuning, SoFT). A BatchNorm model keeps the source's running
statistics for the full model; every sub-model calibrates its own at the end.

Per optimizer step every rank draws the SAME gAcc sub-models (the TypeScript trainer's seeded
draw for that step), each micro-step's global batch (the TypeScript trainer's stream) is split
evenly across ranks, gradients of the gAcc (1/gAcc-weighted) losses accumulate locally
(DDP no_sync) and are all-reduced once with the last; one update follows. BatchNorm batch
statistics are all-reduced too, so N ranks compute what one process computes on the global
batch. Rank 0 writes checkpoints in the project's format (`sortednet eval --run DIR` reads them).
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .checkpoint import Checkpoint, calibrate_bn, load_checkpoint, read_meta, remove_stale, save_calibration, save_checkpoint
from .data import BatchStream, load_dataset, load_text_tokens, shuffled_batches
from .models import build_model
from .nn import BatchNorm2d, Ctx
from .optim import Optimizer, resolve_train_config
from .presets import model_and_grid
from .lock import RunLock
from .rng import Rng, stream_seed
from .submodel import Grid, Sampler, cosine_lr

# 1×1 convolutions' weight gradients come back with size-1 strides DDP does not expect: harmless.
warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

UNSUPPORTED = {
    "individual": "train each sub-model with `sortednet train --strategy individual`",
    "all-exits": "use the TypeScript trainer for all-exits",
}


MAX_CONSECUTIVE_SKIPS = 10  # with nonFinite 'skip': after this many in a row the run is not recovering


class Divergence(Exception):
    """The loss or gradient stopped being finite (exit status 3, as `sortednet train`)."""


def truncate_log(path, step):
    """Cuts log.jsonl back to where training (re)starts: lines past `step`, and a torn last line, go."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line]
    except OSError:
        return
    keep = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            break
        if isinstance(rec.get("step"), (int, float)) and rec["step"] > step:
            break
        keep.append(line)
    if len(keep) < len(lines):
        tmp = f"{path}.tmp-{os.urandom(4).hex()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in keep))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def plan_step(cfg, grid, sampler):
    """Grid indices of the sub-models this step trains (the TypeScript planStep)."""
    s = cfg["strategy"]
    if s == "sorted":
        return sampler.draw(cfg["gAcc"])
    if s == "full-only":
        return [grid.largest] * cfg["gAcc"]
    if s == "sandwich":
        out = [grid.largest, 0]
        while len(out) < cfg["gAcc"]:
            out.append(sampler.draw_one())
        return out
    raise ValueError(f"strategy '{s}' is not supported here: {UNSUPPORTED.get(s, '')}")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m sortednet_torch.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder: continues its checkpoint, or starts from its run.json")
    p.add_argument("--config", help="a run config (as `sortednet train --config`) to start a new run in --run")
    p.add_argument("--init-from", metavar="SRC",
                   help="start a new run in --run from a trained model: a sortednet run folder or a Hugging Face model folder")
    p.add_argument("--strategy", choices=["sorted", "full-only", "sandwich"], help="with --init-from: the training strategy")
    p.add_argument("--data", help="with --init-from: the corpus or dataset name (default: the source run's; LMs: sotu)")
    p.add_argument("--grid", type=json.loads, help='with --init-from: the grid as JSON, e.g. \'{"depth": [2, 4, 6]}\' '
                   "(default: the source run's; a Hugging Face model: every depth)")
    p.add_argument("--seq-len", type=int, help="LM training window in tokens (default: the model's context, maxLen)")
    p.add_argument("--steps", type=int, help="train up to this many optimizer steps in total (default: the run's)")
    p.add_argument("--checkpoint-every", type=int, help="also write a checkpoint every this many steps")
    p.add_argument("--calibrate-batches", type=int, default=20,
                   help="at the end, recalibrate every sub-model's BN statistics on this many batches of 128 and "
                   "store them beside the last checkpoint, as `sortednet eval` does; 0 skips (default 20)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CUDA (NCCL, one GPU per rank) when available, else CPU (gloo)")
    p.add_argument("--quiet", action="store_true", help="no progress lines (errors still print)")
    return p.parse_args(argv)


def setup_distributed(device_kind):
    """(rank, world, device): from torchrun's environment, else one process without DDP."""
    if device_kind == "auto":
        device_kind = "cuda" if torch.cuda.is_available() else "cpu"
    if "RANK" not in os.environ:
        return 0, 1, torch.device(device_kind), None
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device_kind == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    device = torch.device("cuda", local) if device_kind == "cuda" else torch.device("cpu")
    # BN statistics travel on their own communicator, apart from DDP's gradient buckets.
    return dist.get_rank(), dist.get_world_size(), device, dist.new_group()


def init_source(src, args):
    """A step-0 Checkpoint of the trained model in `src` (a sortednet run or a Hugging Face folder)
    and the run.json of the new run."""
    if not os.path.isdir(src):
        raise SystemExit(f"--init-from {src}: not a folder; give a sortednet run folder or a Hugging Face model folder")
    try:
        read_meta(src)
        is_run = True
    except FileNotFoundError:
        is_run = False
    if is_run:
        # The statistics training saved: the full model's BN statistics are the source's.
        source = load_checkpoint(src, skip_optimizer=True, calibrated=False)
        model, spec = source.model, source.meta["model"]
        grid = source.meta["grid"]
        data = source.meta.get("dataset")
        src_run = os.path.join(src, "run.json")
        run_data = {"name": data}
        if os.path.isfile(src_run):
            with open(src_run, encoding="utf-8") as f:
                run_data = json.load(f).get("data") or run_data
        extra, preprocess = source.extra_files, source.meta.get("preprocess")
    elif os.path.isfile(os.path.join(src, "config.json")):
        from .hf_import import HfImportError, load_model

        try:
            model, _, tok = load_model(src)
        except HfImportError as e:
            raise SystemExit(f"--init-from: {e}")
        if tok is None:
            raise SystemExit(f"--init-from {src}: no tokenizer.json; an LM run needs its tokenizer")
        spec = {"family": "transformer", "config": model.config}
        grid = {"depth": list(range(1, model.config["layers"] + 1))}
        run_data = {"name": "sotu"}
        extra, preprocess = {"tokenizer.json": tok.encode("utf-8")}, {"tokenizer": "tokenizer.json"}
    else:
        raise SystemExit(f"--init-from {src}: neither a sortednet run (checkpoint.json) nor a Hugging Face folder (config.json)")
    if args.data:
        run_data = {"name": args.data}
    if not run_data.get("name"):
        raise SystemExit(f"--init-from {src}: the source names no dataset; pass --data NAME")
    grid = args.grid or grid
    try:
        Grid(grid, model)  # checks every sub-model of the grid fits the model, before anything is written
    except ValueError as e:
        raise SystemExit(f"--grid: {e}")
    meta = {"model": spec, "grid": grid, "step": 0, "seed": 1, "dataset": run_data["name"], "preprocess": preprocess}
    ck = Checkpoint(meta=meta, model=model, folder=src, optimizer_state={}, extra_files=dict(extra))
    return ck, {"model": spec, "data": run_data, "grid": grid}


def load_run(args, rank):
    """(run config, train config, checkpoint or None); the checkpoint of --init-from is the source at step 0."""
    run_json = os.path.join(args.run, "run.json")
    try:
        read_meta(args.run)
        has_checkpoint = True
    except FileNotFoundError:
        has_checkpoint = False
    if args.init_from:
        if has_checkpoint:
            raise SystemExit(f"{args.run} already holds a checkpoint; --init-from starts a new run: choose another --run "
                             "(or drop --init-from to continue this one)")
        ck, run = init_source(args.init_from, args)
        train_fields = {}
        if args.config:
            with open(args.config, encoding="utf-8") as f:
                given = json.load(f)
            train_fields = given.get("train", {})
        if args.strategy:
            train_fields["strategy"] = args.strategy
        run["train"] = train_fields
        cfg = resolve_train_config(train_fields)
        ck.meta["seed"] = cfg["seed"]
        if args.steps:
            cfg["steps"] = args.steps
        if args.checkpoint_every is not None:
            cfg["checkpointEvery"] = args.checkpoint_every
        if rank == 0:
            os.makedirs(args.run, exist_ok=True)
            with open(run_json, "w", encoding="utf-8") as f:
                f.write(json.dumps(run, indent=2) + "\n")
            with open(os.path.join(args.run, "init.json"), "w", encoding="utf-8") as f:
                f.write(json.dumps({"source": os.path.abspath(args.init_from)}, indent=2) + "\n")
        return run, cfg, ck
    if args.strategy or args.data or args.grid:
        raise SystemExit("--strategy, --data and --grid go with --init-from; a continued run keeps its own")
    if args.config:
        if has_checkpoint:
            raise SystemExit(f"{args.run} already holds a checkpoint; drop --config to continue it, or choose another --run")
        with open(args.config, encoding="utf-8") as f:
            run = json.load(f)
        if rank == 0:
            os.makedirs(args.run, exist_ok=True)
            with open(run_json, "w", encoding="utf-8") as f:
                f.write(json.dumps(run, indent=2) + "\n")
    elif os.path.isfile(run_json):
        with open(run_json, encoding="utf-8") as f:
            run = json.load(f)
    elif has_checkpoint and read_meta(args.run)[0].get("dataset"):  # `sortednet lm` runs have no run.json
        run = {"data": {"name": read_meta(args.run)[0]["dataset"]}}
    else:
        raise SystemExit(f"{run_json} not found: start a run with --config FILE, or point --run at a sortednet run folder")
    # As the TypeScript trainer resumes: the statistics training saved, not evaluation's.
    ck = load_checkpoint(args.run, calibrated=False) if has_checkpoint else None
    cfg = resolve_train_config((ck.meta.get("train") if ck else None) or run.get("train", {}))
    if args.steps:
        cfg["steps"] = args.steps
    if args.checkpoint_every is not None:
        cfg["checkpointEvery"] = args.checkpoint_every
    if cfg["distill"]:
        raise SystemExit("distillation (train.distill) is not supported by sortednet_torch.train; use the TypeScript trainer")
    return run, cfg, ck


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rank, world, device, bn_group = setup_distributed(args.device)
    # Rank 0 writes, so it holds the run folder's lock (the TypeScript commands respect it too).
    lock = RunLock(args.run, "sortednet_torch.train") if rank == 0 else None
    try:
        if rank == 0:
            for p in remove_stale(args.run):
                print(f"removed {p} (left by an interrupted write)", file=sys.stderr)
        train_run(args, rank, world, device, bn_group)
    except Divergence as e:
        print(f"sortednet_torch.train: {e}", file=sys.stderr)
        sys.exit(3)
    finally:
        if lock:
            lock.release()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def train_run(args, rank, world, device, bn_group):
    log = (lambda *a: print(*a, flush=True)) if rank == 0 and not args.quiet else (lambda *a: None)
    run, cfg, ck = load_run(args, rank)
    tokens = ck is not None and ck.meta["model"]["family"] == "transformer"
    if tokens:
        if ck.meta["model"]["config"]["task"] != "lm":
            raise SystemExit("sortednet_torch.train trains transformer language models; classifiers stay on the TypeScript trainer")
        # An LM with a BPE tokenizer (imported, or trained by `sortednet train`) reads its corpus through it.
        tok = ck.extra_files.get("tokenizer.json")
        seq_len = args.seq_len or ck.meta["model"]["config"]["maxLen"]
        train, _ = load_text_tokens(run["data"]["name"], seq_len, tokenizer_json=tok.decode("utf-8") if tok else None)
    else:
        train, _ = load_dataset(run["data"])
    if ck:
        model, start, seed = ck.model, ck.meta["step"], ck.meta["seed"]
        if args.init_from:
            log(f"initialised from {args.init_from}: {sum(p.numel() for p in model.parameters())} parameters, step 0")
        spec, grid_spec = ck.meta["model"], ck.meta["grid"]
    else:
        torch.manual_seed(cfg["seed"])
        _, size, _, channels = train.images.shape
        spec, grid_spec = model_and_grid(run, channels, size, train.classes)
        model, start, seed = build_model(spec), 0, cfg["seed"]
    if start >= cfg["steps"]:
        raise SystemExit(f"{args.run} is already at step {start} of {cfg['steps']}; pass --steps N (N > {start}) to train on")
    if cfg["batchSize"] % world:
        raise SystemExit(f"batch size {cfg['batchSize']} does not split evenly over {world} ranks; choose a multiple of {world}")
    if cfg["strategy"] not in ("sorted", "full-only", "sandwich"):
        raise SystemExit(f"strategy '{cfg['strategy']}' is not supported here: {UNSUPPORTED.get(cfg['strategy'], '')}")
    model.to(device)
    grid = Grid(grid_spec, model)
    named = list(model.named_parameters())
    opt = Optimizer(cfg["optimizer"], named)
    if ck:
        opt.load(ck.meta.get("optimizerStep", start), ck.optimizer_state, device)
    ddp = model
    if world > 1:
        # Shallower sub-models leave blocks out: find_unused_parameters lets DDP finish without
        # their gradients (narrower ones only slice, and use every parameter).
        shallower = any(s.get("depth", model.max_depth) < model.max_depth for s in grid.subs)
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=shallower
        )
    # Dropout draws: repeatable for a given seed, start step and rank (after DDP's broadcast of rank
    # 0's initial weights, so every rank starts from the same model).
    torch.manual_seed(stream_seed(seed, 104729, start) + rank)
    shared_batch = cfg["sameBatch"] or cfg["strategy"] == "sandwich"
    stream = BatchStream(train, cfg["batchSize"], cfg["seed"], cfg["augment"])
    stream.skip(start * (1 if shared_batch else cfg["gAcc"]))
    local = cfg["batchSize"] // world
    has_bn = any(isinstance(m, BatchNorm2d) for m in model.modules())
    log(f"run {args.run}: {spec['family']} {cfg['strategy']}, {len(grid)} sub-models, steps {start}→{cfg['steps']}, "
        f"{world} rank(s) on {device.type}, gAcc {cfg['gAcc']} × global batch {cfg['batchSize']} ({local} per rank)")
    log_path = os.path.join(args.run, "log.jsonl")
    if rank == 0:
        truncate_log(log_path, start)
    t0, samples, written, skipped_in_a_row = time.perf_counter(), 0, None, 0
    for step in range(start, cfg["steps"]):
        step_rng = Rng(stream_seed(seed, 7919, step))
        entries = plan_step(cfg, grid, Sampler(grid, cfg["sampler"], step_rng.next))
        lr = cosine_lr(step, cfg["steps"], cfg["optimizer"]["lr"], cfg["warmupSteps"])
        for p in model.parameters():
            p.grad = None
        step_loss = torch.zeros((), device=device)
        batches, batch = [], None
        for _ in entries:
            if batch is None or not shared_batch:
                batch = stream.next()
            batches.append(batch)
        # The deepest sub-model goes last: it uses every parameter the others use (depth budgets
        # are nested), so the one synchronised backward reduces every accumulated gradient. (DDP
        # leaves a parameter used only in no_sync micro-steps with its local, unreduced gradient.)
        depth = [grid.subs[e].get("depth", model.max_depth) for e in entries]
        order = sorted(range(len(entries)), key=lambda i: depth[i])
        for j, i in enumerate(order):
            e, (x, y) = entries[i], batches[i]
            x = torch.from_numpy(np.ascontiguousarray(x[rank * local : (rank + 1) * local])).to(device)
            if not tokens:
                x = x.permute(0, 3, 1, 2)  # NHWC files → NCHW
            yt = torch.from_numpy(np.ascontiguousarray(y[rank * local : (rank + 1) * local])).reshape(-1).to(device)
            samples += cfg["batchSize"]
            weight = (cfg.get("lossWeights") or {}).get(grid.ids[e], 1) / len(entries)
            ctx = Ctx("train", grid.ids[e], bn_group if has_bn else None)
            last = j == len(order) - 1
            with ddp.no_sync() if world > 1 and not last else contextlib.nullcontext():
                logits = ddp(x, grid.subs[e], ctx)
                # An LM's logits [B, T, vocab] are scored per token.
                flat = logits.reshape(-1, logits.shape[-1])
                loss = F.cross_entropy(flat, yt, label_smoothing=cfg["labelSmoothing"]) * weight
                loss.backward()
            step_loss += loss.detach()
        if world > 1:
            dist.all_reduce(step_loss)
            step_loss /= world
        # The guard: a non-finite loss or gradient never reaches the weights (nor a checkpoint).
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        grad_norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))) if grads else 0.0
        finite = math.isfinite(float(step_loss)) and math.isfinite(grad_norm)
        if finite:
            opt.apply(lr)
            skipped_in_a_row = 0
        else:
            skipped_in_a_row += 1
            if cfg["nonFinite"] == "stop" or skipped_in_a_row > MAX_CONSECUTIVE_SKIPS:
                raise Divergence(
                    f"step {step + 1}: the loss is {float(step_loss)} and the gradient norm {grad_norm}; training stopped "
                    f"without applying the update (the last checkpoint is intact). Lower the learning rate "
                    f"(now {cfg['optimizer']['lr']}) or check the data"
                )
            log(f"step {step + 1}: loss {float(step_loss)}, gradient norm {grad_norm}; update skipped")
        elapsed = time.perf_counter() - t0
        rec = {"step": step + 1, "loss": float(step_loss), "gradNorm": grad_norm,
               **({} if finite else {"skipped": True}), "lr": lr, "subModels": [grid.ids[e] for e in entries],
               "samplesPerSecond": samples / elapsed, "elapsedSeconds": elapsed, "ranks": world}
        if rank == 0:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            if (step + 1) % 10 == 0 or step + 1 == cfg["steps"]:
                log(f"step {step + 1}/{cfg['steps']}  loss {rec['loss']:.4f}  lr {lr:.2e}  {rec['samplesPerSecond']:.0f} samples/s")
        final = step + 1 == cfg["steps"]
        if final or (cfg["checkpointEvery"] > 0 and (step + 1) % cfg["checkpointEvery"] == 0):
            if rank == 0:
                dataset = (ck.meta.get("dataset") if ck else None) or run["data"]["name"]
                # What travels with the weights (preprocessing, tokenizer.json…) is carried on.
                carried = ({"preprocess": ck.meta.get("preprocess"), "extra_files": ck.extra_files} if ck
                           else {"preprocess": train.preprocess()})
                written = save_checkpoint(args.run, model, grid_spec, step + 1, seed, keep=cfg["keepCheckpoints"],
                                          train=cfg, dataset=dataset, optimizer_state=opt.state, **carried,
                                          optimizer_step=opt.step)
                if final and has_bn and args.calibrate_batches > 0:
                    # As `sortednet eval` does: per-sub-model statistics beside the untouched checkpoint.
                    calibrate_grid(model, grid, train, args.calibrate_batches, device)
                    save_calibration(args.run, model)
            if world > 1:
                dist.barrier()
    log(f"trained {cfg['steps'] - start} steps in {time.perf_counter() - t0:.1f} s; checkpoint {written}")


def calibrate_grid(model, grid, train, n_batches, device, batch_size=128):
    """Every grid sub-model's BN statistics from the TypeScript evaluator's calibration batches."""
    xs = [torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).to(device)
          for x in shuffled_batches(train, min(batch_size, train.n), 12345, n_batches)]
    calibrate_bn(model, xs, list(zip(grid.ids, grid.subs)))


if __name__ == "__main__":
    main()
