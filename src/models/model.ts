/** What every sorted model offers the trainer, the evaluator and the CLI. */
import type * as tf from '@tensorflow/tfjs-core';
import type { ForwardContext, Module } from '../nn/module.js';
import type { SubModel } from '../sorted/submodel.js';
import type { Cost } from '../sorted/cost.js';
import { unitsFor, checkUnits } from '../sorted/slice.js';

export interface SortedModel<Config = unknown> extends Module {
  readonly family: string;
  readonly config: Config;
  /** 'image' models take [B, H, W, C] float32; 'tokens' models take [B, T] int32. */
  readonly input: 'image' | 'tokens';
  /** Logits of sub-model `sub`: [B, classes] (or [B, T, vocab] for a language model). */
  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor;
  /**
   * Logits of `sub` at every depth of `depths` (ascending) from ONE pass through the blocks, for
   * models whose depth-d network is the first d blocks of the deeper ones (all-exits training:
   * the cost of one full forward instead of one per exit). Absent where depth is not a prefix.
   */
  forwardExits?(x: tf.Tensor, sub: SubModel, depths: readonly number[], ctx: ForwardContext): tf.Tensor[];
  /** Analytic parameters and FLOPs per sample of `sub`. */
  cost(sub: SubModel): Cost;
  /** Throws a clear error when `sub` does not fit this model. */
  validate(sub: SubModel): void;
  /** The config of a standalone model equal to `sub` (for extraction). */
  shrink(sub: SubModel): Config;
}

/**
 * Units of layer `name` in `sub`: a per-layer override, else `fraction` of the full size
 * (rounded up to `multiple`).
 */
export function layerUnits(
  sub: SubModel,
  name: string,
  full: number,
  fraction = sub.width ?? 1,
  multiple = 1,
): number {
  const override = sub.layers?.[name];
  if (override !== undefined) return checkUnits(override, full, name);
  return unitsFor(fraction, full, multiple, name);
}

/** Rejects per-layer overrides naming layers the model does not have. */
export function checkLayerNames(sub: SubModel, known: readonly string[], family: string): void {
  for (const k of Object.keys(sub.layers ?? {})) {
    if (!known.includes(k)) {
      throw new Error(
        `${family}: sub-model names unknown layer '${k}'; elastic layers are: ${known.join(', ')}`,
      );
    }
  }
}

export function checkDepth(depth: number | undefined, min: number, max: number, family: string): number {
  const d = depth ?? max;
  if (!Number.isInteger(d) || d < min || d > max) {
    throw new Error(`${family}: depth ${d} is outside ${min}..${max}`);
  }
  return d;
}

/** Throws unless x is an NHWC image batch with the model's channel count. */
export function checkImageInput(x: tf.Tensor, channels: number, family: string): tf.Tensor4D {
  if (x.rank !== 4 || x.shape[3] !== channels) {
    throw new Error(`${family}: input must be [B, H, W, ${channels}], got [${x.shape.join(', ')}]`);
  }
  return x as tf.Tensor4D;
}
