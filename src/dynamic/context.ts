/** What the forward pass of a dynamic layer or model needs besides its input. */
import type * as tf from '@tensorflow/tfjs-core';
import type { ForwardContext, Module } from '../nn/module.js';
import type { Cost } from '../sorted/cost.js';

/**
 * A ForwardContext plus the softmax temperature of dynamic-convolution attention (default 1).
 * The temperature travels with the call, not in layer state, so two passes at different
 * temperatures can be in flight at once.
 */
export interface DynamicContext extends ForwardContext {
  readonly temperature?: number;
}

export function temperatureOf(ctx: DynamicContext): number {
  const t = ctx.temperature ?? 1;
  if (!(t > 0)) throw new Error(`temperature ${t} must be > 0`);
  return t;
}

/** A model with dynamic layers returns its logits and the sum of its layers' auxiliary losses. */
export interface DynamicOutput {
  /** [B, classes]. */
  logits: tf.Tensor2D;
  /** Scalar; 0 when the model has no MoE layers. Add it to the task loss in every training path. */
  auxLoss: tf.Scalar;
}

export interface DynamicModel extends Module {
  readonly family: string;
  /** 'image' models take [B, H, W, C] float32; 'tokens' models take [B, T] int32. */
  readonly input: 'image' | 'tokens';
  forward(x: tf.Tensor, ctx: DynamicContext): DynamicOutput;
  /** Analytic deployed parameters and forward FLOPs per sample. */
  cost(): Cost;
}
