/**
 * `sortednet import --torchvision`: a torchvision state dict saved as safetensors becomes an
 * ordinary run folder (run.json with the model spec and grid, a step-0 checkpoint in format 2,
 * import.json naming the source) that `eval`, `train --init-from`, `predict` and `serve` read.
 * The importer itself (names, layouts, shapes) is src/io/torchvision.ts.
 */
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ModelSpec } from '../models/index.js';
import type { SortedModel } from '../models/model.js';
import { Grid, type GridSpec } from '../sorted/grid.js';
import { importTorchvision } from '../io/torchvision_node.js';
import { hasCheckpoint, saveCheckpoint } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { acquireRunLock } from '../io/lock.js';
import { isSequenceDataset } from '../data/sequences.js';
import { preprocessOf } from '../deploy/preprocess.js';
import { loadRunData } from './run_folder.js';
import type { RunConfig } from './run_config.js';

export interface TorchvisionRunOptions {
  /** The dataset later commands evaluate and fine-tune on (its normalisation and classes go into the checkpoint). */
  data: string;
  /** Test examples later evaluations use (default all), recorded in run.json as `train --test-subset` does. */
  testSubset?: number;
  /** The sub-models (default: depth ½, ¾ and all of the blocks × width ½, ¾, 1). */
  grid?: GridSpec;
  /** Classes of the classifier (default: the rows of the file's classifier weight). */
  classes?: number;
  /** Image side the model is costed at (default: the data's). */
  imageSize?: number;
  seed?: number;
}

export interface TorchvisionRun {
  model: SortedModel;
  spec: ModelSpec;
  grid: GridSpec;
}

/** The default grid of an imported torchvision model: ½, ¾ and all of its blocks × width ½, ¾, 1. */
export function defaultTorchvisionGrid(model: SortedModel): GridSpec {
  const d = (model as SortedModel & { maxDepth: number }).maxDepth; // ResNet and MobileNetV2 have one
  const depth = [...new Set([Math.ceil(d / 2), Math.ceil((3 * d) / 4), d])];
  return { depth, width: [0.5, 0.75, 1] };
}

/**
 * Imports `weights` (torchvision `arch`) into the new run folder `out`. Refuses an `out` that
 * holds a checkpoint and data whose images or classes do not fit the model; a folder it created
 * is removed again on failure.
 */
export function importTorchvisionRun(
  weights: string,
  arch: string,
  out: string,
  o: TorchvisionRunOptions,
): TorchvisionRun {
  const existed = existsSync(out);
  if (existed && !statSync(out).isDirectory())
    throw new Error(`${out} is a file, not a folder; give a new or empty folder for the run`);
  if (hasCheckpoint(out)) throw new Error(`${out} already holds a checkpoint; choose another output folder`);
  const data = loadRunData({ model: arch, data: { name: o.data, testSubset: 1 }, train: {} });
  if (isSequenceDataset(data.train))
    throw new Error(`--data ${o.data} holds token sequences; a torchvision model classifies images`);
  const train = data.train;
  const { model, spec } = importTorchvision(weights, arch, {
    classes: o.classes,
    imageSize: o.imageSize ?? train.height,
  });
  let ok = false;
  try {
    const cfg = spec.config as { inChannels: number; classes: number };
    const misfits: string[] = [];
    if (cfg.inChannels !== train.channels)
      misfits.push(`the model takes ${cfg.inChannels}-channel images, ${o.data} has ${train.channels}`);
    if (cfg.classes !== train.numClasses)
      misfits.push(`the model has ${cfg.classes} classes, ${o.data} ${train.numClasses}`);
    if (misfits.length)
      throw new Error(
        `import ${weights} for --data ${o.data}: ${misfits.join('; ')} (a grey-image model replaces the first conv by a 1-channel one; --classes must match the data)`,
      );
    const grid = o.grid ?? defaultTorchvisionGrid(model);
    new Grid(grid, model); // checks the grid against the model
    mkdirSync(out, { recursive: true });
    const lock = acquireRunLock(out, 'import');
    try {
      saveCheckpoint(out, {
        model,
        grid,
        step: 0,
        seed: o.seed ?? 1,
        dataset: o.data,
        preprocess: preprocessOf(train),
      });
      const run: RunConfig = {
        model: spec,
        data: { name: o.data, ...(o.testSubset !== undefined ? { testSubset: o.testSubset } : {}) },
        grid,
        train: {},
      };
      writeFileAtomic(join(out, 'run.json'), JSON.stringify(run, null, 2) + '\n');
      const record = { source: resolve(weights), architecture: arch, parameters: model.parameterCount() };
      writeFileAtomic(join(out, 'import.json'), JSON.stringify(record, null, 2) + '\n');
    } finally {
      lock.release();
    }
    ok = true;
    return { model, spec, grid };
  } finally {
    if (!ok) {
      model.dispose();
      if (!existed) rmSync(out, { recursive: true, force: true });
    }
  }
}
