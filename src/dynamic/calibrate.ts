/**
 * BatchNorm statistics of a dynamic model: 'eval' mode normalises with statistics stored per key
 * (nn/batchnorm.ts), so they are (re)computed after training and after a mask changes.
 */
import * as tf from '@tensorflow/tfjs-core';
import { namedBatchNorms, type BatchNorm2d } from '../nn/batchnorm.js';
import type { Module } from '../nn/module.js';
import type { DynamicModel } from './context.js';

export function batchNorms(model: Module): BatchNorm2d[] {
  return namedBatchNorms(model).map(([, m]) => m);
}

/**
 * Forgets the statistics under `key` and accumulates new ones over `inputs` (a cumulative
 * average, each batch weighing the same). A model without BatchNorm is left alone.
 */
export function calibrateBatchNorm(
  model: DynamicModel,
  inputs: Iterable<tf.Tensor>,
  opts: { key: string; temperature?: number },
): void {
  const norms = batchNorms(model);
  if (norms.length === 0) return;
  for (const bn of norms) bn.resetStats(opts.key);
  let seen = 0;
  for (const x of inputs) {
    tf.tidy(() => {
      model.forward(x, { mode: 'calibrate', key: opts.key, temperature: opts.temperature });
    });
    seen++;
  }
  if (seen === 0) throw new Error('calibrateBatchNorm: no batches to calibrate on');
}
