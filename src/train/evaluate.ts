/**
 * Evaluation of every sub-model of a grid: parameters, FLOPs, accuracy and latency, with
 * BatchNorm recalibrated per sub-model first (post-training statistics, as US-Nets).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SortedModel } from '../models/model.js';
import type { Grid, GridEntry } from '../sorted/grid.js';
import type { SubModel } from '../sorted/submodel.js';
import type { ImageDataset } from '../data/dataset.js';
import { batches } from '../data/loader.js';
import { namedBatchNorms } from '../nn/batchnorm.js';

export interface EvalRow {
  id: string;
  sub: SubModel;
  params: number;
  flops: number;
  /** FLOPs relative to the largest sub-model of the grid. */
  flopsFraction: number;
  accuracy: number;
  /** Median latency of one forward pass at batch size 1, milliseconds. */
  latencyMs: number;
}

export interface EvalOptions {
  calibrationBatches?: number;
  batchSize?: number;
  latencyReps?: number;
  onRow?: (row: EvalRow) => void;
}

function imageTensor(ds: ImageDataset, x: Float32Array, n: number): tf.Tensor4D {
  return tf.tensor4d(x, [n, ds.height, ds.width, ds.channels]);
}

/** Reset and re-estimate BN statistics of `entry` on training batches (no-op without BN). */
export function calibrateBatchNorm(
  model: SortedModel,
  key: string,
  sub: SubModel,
  train: ImageDataset,
  nBatches = 20,
  batchSize = 128,
): void {
  const bns = namedBatchNorms(model);
  if (bns.length === 0) return;
  for (const [, m] of bns) m.resetStats(key);
  let i = 0;
  for (const b of batches(train, { batchSize, shuffle: true, seed: 12345, dropLast: true })) {
    if (i++ >= nBatches) break;
    tf.tidy(() => {
      model.forward(imageTensor(train, b.x, b.size), sub, { mode: 'calibrate', key });
    });
  }
}

export function accuracy(
  model: SortedModel,
  entry: { id: string; sub: SubModel },
  test: ImageDataset,
  batchSize = 256,
): number {
  let correct = 0;
  for (const b of batches(test, { batchSize })) {
    const pred = tf.tidy(() =>
      tf.argMax(
        model.forward(imageTensor(test, b.x, b.size), entry.sub, { mode: 'eval', key: entry.id }),
        -1,
      ),
    );
    const p = pred.dataSync();
    pred.dispose();
    for (let i = 0; i < b.size; i++) if (p[i] === b.y[i]) correct++;
  }
  return correct / test.n;
}

export function latencyMs(
  model: SortedModel,
  entry: { id: string; sub: SubModel },
  sample: tf.Tensor,
  reps = 7,
): number {
  // The block body matters: a tidy that returns the read-back array walks every element of it.
  const run = () =>
    tf.tidy(() => {
      model.forward(sample, entry.sub, { mode: 'eval', key: entry.id }).dataSync();
    });
  run(); // warm-up: first calls compile/allocate
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export function evaluateGrid(
  model: SortedModel,
  grid: Grid,
  train: ImageDataset,
  test: ImageDataset,
  options: EvalOptions = {},
  entries: readonly GridEntry[] = grid.entries,
): EvalRow[] {
  const sample = tf.tidy(() =>
    imageTensor(test, test.images.subarray(0, test.height * test.width * test.channels), 1),
  );
  const full = grid.largest.cost.flops;
  const rows: EvalRow[] = [];
  for (const e of entries) {
    calibrateBatchNorm(model, e.id, e.sub, train, options.calibrationBatches ?? 20);
    const row: EvalRow = {
      id: e.id,
      sub: e.sub,
      params: e.cost.params,
      flops: e.cost.flops,
      flopsFraction: e.cost.flops / full,
      accuracy: accuracy(model, e, test, options.batchSize),
      latencyMs: latencyMs(model, e, sample, options.latencyReps),
    };
    rows.push(row);
    options.onRow?.(row);
  }
  sample.dispose();
  return rows;
}
