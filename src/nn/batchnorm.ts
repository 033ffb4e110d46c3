import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from './module.js';
import { checkUnits, prefix } from '../sorted/slice.js';
import { batchNormTrain } from '../engine/ops/batch_norm_train.js';

export interface BnStats {
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
  /** Batches averaged so far (calibration is a cumulative average, as in US-Nets). */
  count: number;
}

/**
 * BatchNorm over NHWC channels with statistics PER SUB-MODEL (keyed by `ctx.key`): sliced
 * sub-models see different feature statistics, so one shared running mean would be wrong for
 * all but one of them (Slimmable Nets, §3.3).
 *  - train: normalise with batch statistics; no state changes.
 *  - calibrate: batch statistics, and accumulate their cumulative average under ctx.key.
 *  - eval: normalise with the statistics stored under ctx.key.
 */
export class BatchNorm2d extends Module {
  readonly gamma: tf.Variable;
  readonly beta: tf.Variable;
  readonly stats = new Map<string, BnStats>();
  constructor(
    readonly channels: number,
    readonly name = 'bn',
    readonly epsilon = 1e-5,
  ) {
    super();
    this.gamma = this.addParam('weight', tf.ones([channels]));
    this.beta = this.addParam('bias', tf.zeros([channels]));
  }

  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    const c = x.shape[3];
    checkUnits(c, this.channels, this.name, 'channels');
    const gamma = prefix(this.gamma, [c], this.name);
    const beta = prefix(this.beta, [c], this.name);
    if (ctx.mode === 'train')
      return batchNormTrain(x, gamma as tf.Tensor1D, beta as tf.Tensor1D, this.epsilon);
    let mean: tf.Tensor;
    let variance: tf.Tensor;
    if (ctx.mode === 'eval') {
      const s = this.stats.get(ctx.key);
      if (!s) {
        throw new Error(
          `BatchNorm '${this.name}' has no statistics for sub-model '${ctx.key}': calibrate it first (calibrateBatchNorm)`,
        );
      }
      if (s.mean.shape[0] !== c) {
        throw new Error(
          `BatchNorm '${this.name}': statistics for '${ctx.key}' have ${s.mean.shape[0]} channels, input has ${c}`,
        );
      }
      mean = s.mean;
      variance = s.variance;
    } else {
      ({ mean, variance } = tf.moments(x, [0, 1, 2]));
      this.accumulate(ctx.key, mean as tf.Tensor1D, variance as tf.Tensor1D);
    }
    return tf.batchNorm(x, mean, variance, beta, gamma, this.epsilon) as tf.Tensor4D;
  }

  private accumulate(key: string, mean: tf.Tensor1D, variance: tf.Tensor1D): void {
    const old = this.stats.get(key);
    const n = old ? old.count : 0;
    // Cumulative average: after k batches, each batch weighs 1/k.
    const next = tf.tidy(() => ({
      mean: old ? tf.add(tf.mul(old.mean, n / (n + 1)), tf.mul(mean, 1 / (n + 1))) : tf.clone(mean),
      variance: old
        ? tf.add(tf.mul(old.variance, n / (n + 1)), tf.mul(variance, 1 / (n + 1)))
        : tf.clone(variance),
    }));
    tf.keep(next.mean);
    tf.keep(next.variance);
    if (old) {
      old.mean.dispose();
      old.variance.dispose();
    }
    this.stats.set(key, {
      mean: next.mean as tf.Tensor1D,
      variance: next.variance as tf.Tensor1D,
      count: n + 1,
    });
  }

  /** Forget the statistics of one sub-model (or all) before recalibrating. */
  resetStats(key?: string): void {
    for (const [k, s] of this.stats) {
      if (key !== undefined && k !== key) continue;
      s.mean.dispose();
      s.variance.dispose();
      this.stats.delete(k);
    }
  }
}

/** Every BatchNorm2d of a model with its stable dotted name (checkpoints, calibration, extraction). */
export function namedBatchNorms(model: Module): [string, BatchNorm2d][] {
  return model.namedModules().filter((e): e is [string, BatchNorm2d] => e[1] instanceof BatchNorm2d);
}
