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
import { isSequenceDataset, sequenceBatches, type SequenceDataset } from '../data/sequences.js';
import { calibrateBatchNorm, type LabelledBatch } from '../nn/calibrate.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import { subModelContext } from '../nn/module.js';
import { medianMs } from './timing.js';
import { FoldCache } from '../nn/fold_cache.js';

export type { LabelledBatch };

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

/** Labelled evaluation data: images, or token sequences (text classification). */
export type LabelledData = ImageDataset | SequenceDataset;

/** The data's batches in order, as model inputs (tensors the caller disposes) and labels. */
function* inputBatches(
  ds: LabelledData,
  batchSize: number,
): Generator<{ x: tf.Tensor; y: Int32Array; size: number }> {
  if (isSequenceDataset(ds)) {
    for (const b of sequenceBatches(ds, { batchSize }))
      yield { x: tf.tensor2d(b.x, [b.size, ds.seqLen], 'int32'), y: b.y, size: b.size };
  } else {
    for (const b of batches(ds, { batchSize }))
      yield { x: imageTensor(ds, b.x, b.size), y: b.y, size: b.size };
  }
}

/**
 * The first `n` batches of a seeded shuffle of `data`, as tensors with labels (the caller
 * disposes them): calibration data for BatchNorm and for IMP.
 */
export function labelledBatches(data: LabelledData, n = 20, batchSize = 128, seed = 12345): LabelledBatch[] {
  const out: LabelledBatch[] = [];
  const o = { batchSize: Math.min(batchSize, data.n), shuffle: true, seed, dropLast: true };
  const it = isSequenceDataset(data) ? sequenceBatches(data, o) : batches(data, o);
  for (const b of it) {
    if (out.length >= n) break;
    const x = isSequenceDataset(data)
      ? tf.tensor2d(b.x, [b.size, data.seqLen], 'int32')
      : imageTensor(data, b.x as Float32Array, b.size);
    out.push({ x, y: tf.tensor1d(b.y, 'int32') });
  }
  return out;
}

/** The inputs of `labelledBatches` (BatchNorm calibration needs no labels). */
export function calibrationBatches(data: LabelledData, n = 20, batchSize = 128): tf.Tensor[] {
  return labelledBatches(data, n, batchSize).map((b) => {
    b.y.dispose();
    return b.x;
  });
}

/** Predicted classes of every test example, in order. */
export function predictions(
  model: SortedModel,
  entry: { id: string; sub: SubModel },
  test: LabelledData,
  batchSize = 256,
  folds?: FoldCache,
): Int32Array {
  const out = new Int32Array(test.n);
  let offset = 0;
  for (const b of inputBatches(test, batchSize)) {
    const pred = tf.tidy(() =>
      tf.argMax(model.forward(b.x, entry.sub, subModelContext(entry.sub, 'eval', { folds })), -1),
    );
    out.set(pred.dataSync(), offset);
    offset += b.size;
    tf.dispose([pred, b.x]);
  }
  return out;
}

export function accuracy(
  model: SortedModel,
  entry: { id: string; sub: SubModel },
  test: LabelledData,
  batchSize = 256,
  folds?: FoldCache,
): number {
  const p = predictions(model, entry, test, batchSize, folds);
  let correct = 0;
  for (let i = 0; i < test.n; i++) if (p[i] === test.labels[i]) correct++;
  return correct / test.n;
}

/** F1 of class 1 for two classes (e.g. spam = positive), else the macro average over classes. */
export function f1Score(predicted: ArrayLike<number>, labels: ArrayLike<number>, classes: number): number {
  const f1Of = (c: number): number => {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < labels.length; i++) {
      if (predicted[i] === c && labels[i] === c) tp++;
      else if (predicted[i] === c) fp++;
      else if (labels[i] === c) fn++;
    }
    return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  };
  if (classes === 2) return f1Of(1);
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += f1Of(c);
  return sum / classes;
}

export function latencyMs(
  model: SortedModel,
  entry: { id: string; sub: SubModel },
  sample: tf.Tensor,
  reps = 7,
  folds?: FoldCache,
): number {
  const ctx = subModelContext(entry.sub, 'eval', { folds });
  // The block body matters: a tidy that returns the read-back array walks every element of it.
  return medianMs(
    () =>
      tf.tidy(() => {
        model.forward(sample, entry.sub, ctx).dataSync();
      }),
    reps,
  );
}

export function evaluateGrid(
  model: SortedModel,
  grid: Grid,
  train: LabelledData,
  test: LabelledData,
  options: EvalOptions = {},
  entries: readonly GridEntry[] = grid.entries,
): EvalRow[] {
  const sample = inputBatches(test, 1).next().value!.x;
  const full = grid.largest.cost.flops;
  const rows: EvalRow[] = [];
  // Accuracy and latency as a deployment runs the model (src/deploy/model.ts): convolutions with their
  // BatchNorm folded in.
  const folds = new FoldCache();
  const calibration =
    namedBatchNorms(model).length > 0 ? calibrationBatches(train, options.calibrationBatches ?? 20) : [];
  try {
    for (const e of entries) {
      if (calibration.length) calibrateBatchNorm(model, e.sub, e.id, calibration);
      const row: EvalRow = {
        id: e.id,
        sub: e.sub,
        params: e.cost.params,
        flops: e.cost.flops,
        flopsFraction: e.cost.flops / full,
        accuracy: accuracy(model, e, test, options.batchSize, folds),
        latencyMs: latencyMs(model, e, sample, options.latencyReps, folds),
      };
      rows.push(row);
      options.onRow?.(row);
      folds.clear(); // each sub-model is evaluated once: its folds are not used again
    }
  } finally {
    folds.clear();
    tf.dispose([sample, ...calibration]);
  }
  return rows;
}
