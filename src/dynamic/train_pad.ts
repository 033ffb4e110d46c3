/**
 * A plain training loop for the PAD-Net experiments: Adam on cross-entropy + the models' aux
 * loss, the DY-Conv temperature annealed per step, BatchNorm calibrated before evaluation.
 * Read it top to bottom: data, optimizer, loop, evaluation.
 */
import * as tf from '@tensorflow/tfjs-core';
import { seedStream } from '../nn/init.js';
import { createRng, permutation } from '../data/random.js';
import type { ImageDataset } from '../data/dataset.js';
import { calibrateBatchNorm } from './calibrate.js';
import { DEFAULT_TEMPERATURE, temperatureAt, type TemperatureSchedule } from './temperature.js';
import type { DynamicContext, DynamicModel } from './context.js';
import type { LabelledBatch } from './imp.js';

/** A labelled split as typed arrays, sample-major. */
export interface ClassificationSplit {
  /** float32 images [n, H, W, C] or int32 tokens [n, T]. */
  inputs: Float32Array | Int32Array;
  /** Shape of one sample: [H, W, C] or [T]. */
  sampleShape: readonly number[];
  labels: Int32Array;
  n: number;
  classes: number;
}

export function imageSplit(ds: ImageDataset): ClassificationSplit {
  return {
    inputs: ds.images,
    sampleShape: [ds.height, ds.width, ds.channels],
    labels: ds.labels,
    n: ds.n,
    classes: ds.numClasses,
  };
}

/** The samples at `indices` as tensors (the caller disposes them). */
export function batchOf(split: ClassificationSplit, indices: ArrayLike<number>): LabelledBatch {
  const size = split.sampleShape.reduce((a, b) => a * b, 1);
  const n = indices.length;
  const isTokens = split.inputs instanceof Int32Array;
  const data = isTokens ? new Int32Array(n * size) : new Float32Array(n * size);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = indices[i];
    data.set(split.inputs.subarray(j * size, (j + 1) * size), i * size);
    labels[i] = split.labels[j];
  }
  return {
    x: tf.tensor(data, [n, ...split.sampleShape], isTokens ? 'int32' : 'float32'),
    y: tf.tensor1d(labels, 'int32'),
  };
}

/** Index lists of the batches of one epoch (shuffled with `seed`, or in order). */
export function batchIndices(n: number, batchSize: number, shuffle: boolean, seed = 0): Int32Array[] {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`batchSize ${batchSize} must be a positive integer`);
  const order = shuffle ? permutation(n, createRng(seed)) : Int32Array.from({ length: n }, (_, i) => i);
  const out: Int32Array[] = [];
  for (let i = 0; i < n; i += batchSize) out.push(order.subarray(i, Math.min(n, i + batchSize)));
  return out;
}

/** F1 of class 1 for two classes (spam = positive), else the macro average over classes. */
export function f1Score(predictions: ArrayLike<number>, labels: ArrayLike<number>, classes: number): number {
  const f1Of = (c: number): number => {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < labels.length; i++) {
      if (predictions[i] === c && labels[i] === c) tp++;
      else if (predictions[i] === c) fp++;
      else if (labels[i] === c) fn++;
    }
    return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  };
  if (classes === 2) return f1Of(1);
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += f1Of(c);
  return sum / classes;
}

export interface Evaluation {
  accuracy: number;
  /** Binary F1 of class 1 for two classes, macro F1 otherwise. */
  f1: number;
  /** Mean cross-entropy. */
  loss: number;
  n: number;
}

export interface EvaluateOptions {
  batchSize?: number;
  key?: string;
  /** DY-Conv temperature (the one training ended at). Default 1. */
  temperature?: number;
  /** Recalibrate BatchNorm on the first `calibrationBatches` shuffled batches of this split first. */
  calibrateOn?: ClassificationSplit;
  calibrationBatches?: number;
}

/** Accuracy, F1 and loss on `split`, in eval mode. */
export function evaluate(
  model: DynamicModel,
  split: ClassificationSplit,
  opts: EvaluateOptions = {},
): Evaluation {
  const batchSize = opts.batchSize ?? 256;
  const key = opts.key ?? 'full';
  if (opts.calibrateOn) {
    const cal = opts.calibrateOn;
    const chosen = batchIndices(cal.n, batchSize, true, 12345).slice(0, opts.calibrationBatches ?? 10);
    const batches = chosen.map((idx) => batchOf(cal, idx));
    calibrateBatchNorm(
      model,
      batches.map((b) => b.x),
      { key, temperature: opts.temperature },
    );
    batches.forEach((b) => tf.dispose([b.x, b.y]));
  }
  const ctx: DynamicContext = { mode: 'eval', key, temperature: opts.temperature };
  const predictions = new Int32Array(split.n);
  let lossSum = 0;
  let offset = 0;
  for (const idx of batchIndices(split.n, batchSize, false)) {
    const { x, y } = batchOf(split, idx);
    // The tidy returns tensors: returning typed arrays would make it walk every element.
    const [pred, loss] = tf.tidy(() => {
      const { logits } = model.forward(x, ctx);
      const onehot = tf.oneHot(y, split.classes);
      const ce = tf.losses.softmaxCrossEntropy(onehot, logits, undefined, undefined, tf.Reduction.SUM);
      return [tf.argMax(logits, 1), ce];
    });
    predictions.set(pred.dataSync(), offset);
    offset += idx.length;
    lossSum += loss.dataSync()[0];
    tf.dispose([x, y, pred, loss]);
  }
  let correct = 0;
  for (let i = 0; i < split.n; i++) if (predictions[i] === split.labels[i]) correct++;
  return {
    accuracy: correct / split.n,
    f1: f1Score(predictions, split.labels, split.classes),
    loss: lossSum / split.n,
    n: split.n,
  };
}

export interface TrainPadOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  /** DY-Conv temperature, evaluated at fractional epochs (per step). Default 30 → 1 over 10 epochs. */
  temperature?: TemperatureSchedule;
  key?: string;
  /** BatchNorm calibration batches before evaluation. Default 10. */
  calibrationBatches?: number;
  log?: (line: string) => void;
}

export interface EpochLog {
  epoch: number;
  /** Mean task loss (cross-entropy) and mean aux loss over the epoch's steps. */
  loss: number;
  auxLoss: number;
  /** Temperature at the end of the epoch. */
  temperature: number;
  seconds: number;
}

export interface TrainPadResult {
  epochs: EpochLog[];
  test: Evaluation;
  trainSeconds: number;
}

/**
 * Trains `model` on `train` and evaluates it on `test`. The aux loss (MoE load balancing) is
 * added to the task loss at every step; the masks of PAD layers are frozen (non-trainable).
 */
export function trainPad(
  model: DynamicModel,
  train: ClassificationSplit,
  test: ClassificationSplit,
  opts: TrainPadOptions,
): TrainPadResult {
  const { epochs, batchSize, learningRate, seed } = opts;
  const schedule = opts.temperature ?? DEFAULT_TEMPERATURE;
  const key = opts.key ?? 'full';
  const log = opts.log ?? (() => undefined);
  const optimizer = tf.train.adam(learningRate);
  const variables = model.trainableVariables();
  const history: EpochLog[] = [];
  let temperature = temperatureAt(schedule, 0);
  const start = performance.now();
  let step = 0;

  for (let epoch = 0; epoch < epochs; epoch++) {
    const epochStart = performance.now();
    const plan = batchIndices(train.n, batchSize, true, seed * 1000 + epoch);
    let lossSum = 0;
    let auxSum = 0;
    plan.forEach((idx, i) => {
      temperature = temperatureAt(schedule, epoch + i / plan.length);
      const ctx: DynamicContext = {
        mode: 'train',
        key,
        seed: seedStream(seed * 100003 + step++),
        temperature,
      };
      const { x, y } = batchOf(train, idx);
      let parts: tf.Tensor | null = null;
      const total = optimizer.minimize(
        () => {
          const { logits, auxLoss } = model.forward(x, ctx);
          const task = tf.losses.softmaxCrossEntropy(tf.oneHot(y, train.classes), logits) as tf.Scalar;
          parts = tf.keep(tf.stack([task, auxLoss]));
          return tf.add(task, auxLoss) as tf.Scalar;
        },
        true,
        variables,
      );
      const [task, aux] = (parts as tf.Tensor | null)?.dataSync() ?? [Number.NaN, Number.NaN];
      lossSum += task;
      auxSum += aux;
      tf.dispose([x, y, total ?? [], parts ?? []]);
    });
    temperature = temperatureAt(schedule, epoch + 1);
    const entry = {
      epoch: epoch + 1,
      loss: lossSum / plan.length,
      auxLoss: auxSum / plan.length,
      temperature,
      seconds: (performance.now() - epochStart) / 1000,
    };
    history.push(entry);
    log(
      `epoch ${entry.epoch}/${epochs}  loss ${entry.loss.toFixed(4)}  aux ${entry.auxLoss.toFixed(4)}  ` +
        `T ${temperature.toFixed(2)}  ${entry.seconds.toFixed(1)} s`,
    );
  }
  optimizer.dispose();
  const trainSeconds = (performance.now() - start) / 1000;
  const result = evaluate(model, test, {
    key,
    temperature,
    calibrateOn: train,
    calibrationBatches: opts.calibrationBatches ?? 10,
  });
  log(
    `test accuracy ${(100 * result.accuracy).toFixed(2)}%  F1 ${result.f1.toFixed(4)}  loss ${result.loss.toFixed(4)}`,
  );
  return { epochs: history, test: result, trainSeconds };
}
