import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext, type SubModelStats } from './module.js';
import { checkUnits, prefix } from '../sorted/slice.js';
import { batchNormTrain } from '../engine/ops/batch_norm_train.js';
import { activate } from '../engine/ops/activation.js';
import { scaleShift } from '../engine/ops/scale_shift.js';
import type { FusedActivation } from '../engine/kernels/activation.js';

/** One sub-model's BatchNorm statistics (a read-only view: `loadStateDict` and calibration set them). */
export interface BnStats {
  readonly mean: tf.Tensor1D;
  readonly variance: tf.Tensor1D;
  /** Batches averaged so far (calibration is a cumulative average, as in US-Nets). */
  readonly count: number;
}

/** The fields of one sub-model's statistics in the state dict (`stats.<subId>.<field>`). */
const FIELDS = ['mean', 'variance', 'count'] as const;

/**
 * BatchNorm over NHWC channels with statistics PER SUB-MODEL (keyed by `ctx.key`): sliced
 * sub-models see different feature statistics, so one shared running mean would be wrong for
 * all but one of them (Slimmable Nets, §3.3).
 *  - train: normalise with batch statistics; no state changes.
 *  - calibrate: batch statistics, and accumulate their cumulative average under ctx.key.
 *  - eval: normalise with the statistics stored under ctx.key.
 * The statistics are module state: `stateDict()` holds `stats.<subId>.mean`, `.variance` (F32 [c],
 * c the channels that sub-model uses) and `.count` (I32 scalar) under the module's path.
 */
export class BatchNorm2d extends Module {
  readonly gamma: tf.Variable;
  readonly beta: tf.Variable;
  private readonly stats = new Map<string, { mean: tf.Tensor1D; variance: tf.Tensor1D; count: tf.Scalar }>();
  /**
   * Per sub-model, its statistics and the affine folded into one scale and shift per channel, and what they
   * were folded from (the statistics object and the parameters' data), so that any change refolds them.
   */
  private readonly folded = new Map<
    string,
    { scale: tf.Tensor1D; shift: tf.Tensor1D; from: [object, tf.DataId, tf.DataId] }
  >();
  constructor(
    readonly channels: number,
    readonly name = 'bn',
    readonly epsilon = 1e-5,
  ) {
    super();
    this.gamma = this.addParam('weight', tf.ones([channels]));
    this.beta = this.addParam('bias', tf.zeros([channels]));
  }

  /** Normalises x, then applies `activation`; in training the two run as one kernel where the engine has it. */
  forward(x: tf.Tensor4D, ctx: ForwardContext, activation: FusedActivation = 'linear'): tf.Tensor4D {
    if (ctx.mode === 'train') {
      checkUnits(x.shape[3], this.channels, this.name, 'channels');
      // The whole γ and β: batchNormTrain reads a sub-network's prefix in place where it can.
      return batchNormTrain(x, this.gamma as tf.Tensor1D, this.beta as tf.Tensor1D, this.epsilon, activation);
    }
    // Evaluation outside a gradient: one kernel with the folded scale and shift (cached per sub-model). Under a
    // gradient tape the composed form keeps γ and β differentiable.
    if (ctx.mode === 'eval' && tf.engine().state.gradientDepth === 0) {
      const { scale, shift } = this.foldedScaleShift(x.shape[3], ctx.key);
      return scaleShift(x, scale, shift, activation) as tf.Tensor4D;
    }
    return activate(this.normalise(x, ctx), activation);
  }

  /**
   * Sub-model `key`'s scale γ/√(σ² + ε) and shift β − μ·scale over its c channels, folded once and kept
   * (new tensors whenever the statistics, γ or β change: callers may key their own folds on them). Throws
   * when the sub-model has no statistics for c channels.
   */
  foldedScaleShift(c: number, key: string): { scale: tf.Tensor1D; shift: tf.Tensor1D } {
    const s = this.statsOrThrow(c, key);
    const from: [object, tf.DataId, tf.DataId] = [s, this.gamma.dataId, this.beta.dataId];
    const hit = this.folded.get(key);
    if (hit && hit.from.every((v, i) => v === from[i])) return hit;
    this.unfold(key);
    const f = tf.tidy(() => {
      const scale = tf.div(prefix(this.gamma, [c], this.name), tf.sqrt(tf.add(s.variance, this.epsilon)));
      const shift = tf.sub(prefix(this.beta, [c], this.name), tf.mul(s.mean, scale));
      return { scale: tf.keep(scale) as tf.Tensor1D, shift: tf.keep(shift) as tf.Tensor1D };
    });
    this.folded.set(key, { ...f, from });
    return f;
  }

  private unfold(key?: string): void {
    for (const [k, f] of this.folded) {
      if (key !== undefined && k !== key) continue;
      tf.dispose([f.scale, f.shift]);
      this.folded.delete(k);
    }
  }

  /** The statistics of sub-model `key` for c channels; a clear error when there are none, or for other widths. */
  private statsOrThrow(c: number, key: string): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
    checkUnits(c, this.channels, this.name, 'channels');
    const s = this.stats.get(key);
    if (!s) {
      throw new Error(
        `BatchNorm '${this.name}' has no statistics for sub-model '${key}': calibrate it first (calibrateBatchNorm)`,
      );
    }
    if (s.mean.shape[0] !== c) {
      throw new Error(
        `BatchNorm '${this.name}': statistics for '${key}' have ${s.mean.shape[0]} channels, input has ${c}`,
      );
    }
    return s;
  }

  private normalise(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D {
    const c = x.shape[3];
    checkUnits(c, this.channels, this.name, 'channels');
    const gamma = prefix(this.gamma, [c], this.name);
    const beta = prefix(this.beta, [c], this.name);
    let mean: tf.Tensor;
    let variance: tf.Tensor;
    if (ctx.mode === 'eval') {
      ({ mean, variance } = this.statsOrThrow(c, ctx.key));
    } else {
      ({ mean, variance } = tf.moments(x, [0, 1, 2]));
      this.accumulate(ctx.key, mean as tf.Tensor1D, variance as tf.Tensor1D);
    }
    return tf.batchNorm(x, mean, variance, beta, gamma, this.epsilon) as tf.Tensor4D;
  }

  private accumulate(key: string, mean: tf.Tensor1D, variance: tf.Tensor1D): void {
    const old = this.stats.get(key);
    const n = old ? old.count.dataSync()[0] : 0;
    // Cumulative average: after k batches, each batch weighs 1/k.
    const next = tf.tidy(() => ({
      mean: old ? tf.add(tf.mul(old.mean, n / (n + 1)), tf.mul(mean, 1 / (n + 1))) : tf.clone(mean),
      variance: old
        ? tf.add(tf.mul(old.variance, n / (n + 1)), tf.mul(variance, 1 / (n + 1)))
        : tf.clone(variance),
    }));
    tf.keep(next.mean);
    tf.keep(next.variance);
    this.resetStats(key);
    this.stats.set(key, {
      mean: next.mean as tf.Tensor1D,
      variance: next.variance as tf.Tensor1D,
      count: tf.keep(tf.scalar(n + 1, 'int32')),
    });
  }

  /** The statistics of one sub-model, or undefined when it has not been calibrated. */
  statsFor(key: string): BnStats | undefined {
    const s = this.stats.get(key);
    return s && { mean: s.mean, variance: s.variance, count: s.count.dataSync()[0] };
  }

  /** The sub-models this layer holds statistics for, sorted. */
  statsKeys(): string[] {
    return [...this.stats.keys()].sort();
  }

  /** By sub-model id, sorted: the order does not depend on the order of calibration or loading. */
  protected override ownStats(): ReadonlyMap<string, SubModelStats> {
    const keys = [...this.stats.keys()].sort();
    return new Map(keys.map((key) => [key, new Map(FIELDS.map((f) => [f, this.stats.get(key)![f]]))]));
  }

  protected override statsLoader(key: string, fields: SubModelStats, where: (field: string) => string) {
    for (const f of fields.keys())
      if (!(FIELDS as readonly string[]).includes(f))
        throw new Error(`${where(f)}: BatchNorm statistics have the fields ${FIELDS.join(', ')}, not '${f}'`);
    const [mean, variance, count] = FIELDS.map((f) => {
      const t = fields.get(f);
      if (!t) throw new Error(`${where(f)} is missing (BatchNorm statistics need ${FIELDS.join(', ')})`);
      return t;
    });
    // A narrower sub-model keeps statistics for a prefix of the channels.
    const c = mean.shape[0];
    if (mean.rank !== 1 || !(c >= 1 && c <= this.channels) || mean.dtype !== 'float32')
      throw new Error(
        `${where('mean')} is ${mean.dtype} [${mean.shape}]; BatchNorm '${this.name}' has ${this.channels} channels (float32 [c], c ≤ ${this.channels})`,
      );
    if (variance.shape.join() !== mean.shape.join() || variance.dtype !== 'float32')
      throw new Error(
        `${where('variance')} is ${variance.dtype} [${variance.shape}], the mean float32 [${mean.shape}]`,
      );
    const n = count.rank === 0 && count.dtype === 'int32' ? count.dataSync()[0] : NaN;
    if (!(n >= 1)) throw new Error(`${where('count')} must be an int32 scalar ≥ 1 (batches averaged)`);
    return () => {
      this.resetStats(key);
      // Kept: loading may run inside a caller's tf.tidy.
      this.stats.set(key, {
        mean: tf.keep(tf.clone(mean)) as tf.Tensor1D,
        variance: tf.keep(tf.clone(variance)) as tf.Tensor1D,
        count: tf.keep(tf.scalar(n, 'int32')),
      });
    };
  }

  protected override disposeOwn(): void {
    this.resetStats();
  }

  /** Forget the statistics of one sub-model (or all) before recalibrating. */
  resetStats(key?: string): void {
    this.unfold(key);
    for (const [k, s] of this.stats) {
      if (key !== undefined && k !== key) continue;
      tf.dispose([s.mean, s.variance, s.count]);
      this.stats.delete(k);
    }
  }
}

/** Drops every BatchNorm statistic of `model` but sub-model `key`'s (after masks or widths change). */
export function keepStatsOnly(model: Module, key: string): void {
  for (const [, bn] of namedBatchNorms(model))
    for (const k of bn.statsKeys()) if (k !== key) bn.resetStats(k);
}

/** Every BatchNorm2d of a model with its stable dotted name (calibration, export). */
export function namedBatchNorms(model: Module): [string, BatchNorm2d][] {
  return model.namedModules().filter((e): e is [string, BatchNorm2d] => e[1] instanceof BatchNorm2d);
}
