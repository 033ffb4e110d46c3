/**
 * The one BatchNorm calibration, below the models that use it (evaluation, IMP, compaction):
 * a module tree with a sub-model forward is all it needs.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ForwardContext, Module } from './module.js';
import { namedBatchNorms } from './batchnorm.js';
import type { SubModel } from '../sorted/submodel.js';

/** A batch of model inputs with their labels (int32 [B]): calibration data for BatchNorm and IMP. */
export interface LabelledBatch {
  x: tf.Tensor;
  y: tf.Tensor1D;
}

/** A module tree that runs a sub-model (every SortedModel is one). */
export interface SubModelForward extends Module {
  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor;
}

/**
 * Calibrates BatchNorm after training, after a PAD mask changes, per sub-model:
 * forgets the statistics under `key` and re-estimates them over ALL of `inputs`, each batch
 * weighing the same (a cumulative average, as US-Nets). A model without BatchNorm is left alone.
 * `temperature` is the dynamic-conv attention temperature of the passes (default 1).
 */
export function calibrateBatchNorm(
  model: SubModelForward,
  sub: SubModel,
  key: string,
  inputs: Iterable<tf.Tensor>,
  opts: { temperature?: number } = {},
): void {
  const bns = namedBatchNorms(model);
  if (bns.length === 0) return;
  for (const [, m] of bns) m.resetStats(key);
  let seen = 0;
  for (const x of inputs) {
    tf.tidy(() => {
      model.forward(x, sub, { mode: 'calibrate', key, temperature: opts.temperature });
    });
    seen++;
  }
  if (seen === 0) throw new Error(`calibrateBatchNorm: no batches to calibrate '${key}' on`);
}
