/** Parameter-free layers: activations, pooling, dropout. */
import * as tf from '@tensorflow/tfjs-core';
import type { ForwardContext } from './module.js';

export type Activation = 'relu' | 'relu6' | 'gelu' | 'silu' | 'none';

export function activate(x: tf.Tensor, act: Activation): tf.Tensor {
  switch (act) {
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'gelu':
      return gelu(x);
    case 'silu':
      return tf.mul(x, tf.sigmoid(x));
    case 'none':
      return x;
  }
}

/** GELU, tanh approximation (GPT-2). */
export function gelu(x: tf.Tensor): tf.Tensor {
  const c = Math.sqrt(2 / Math.PI);
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), c);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/** [B, H, W, C] → [B, C]. */
export function globalAvgPool(x: tf.Tensor4D): tf.Tensor2D {
  return tf.mean(x, [1, 2]) as tf.Tensor2D;
}

export function maxPool(x: tf.Tensor4D, size: number, stride = size): tf.Tensor4D {
  return tf.maxPool(x, size, stride, 'same');
}

export function avgPool(x: tf.Tensor4D, size: number, stride = size): tf.Tensor4D {
  return tf.avgPool(x, size, stride, 'same');
}

/** Inverted dropout; active only in 'train' mode, seeded from the context for repeatable runs. */
export function dropout(x: tf.Tensor, rate: number, ctx: ForwardContext): tf.Tensor {
  if (ctx.mode !== 'train' || rate <= 0) return x;
  if (!ctx.seed) throw new Error('dropout in train mode needs ctx.seed for a repeatable run');
  return tf.dropout(x, rate, undefined, ctx.seed());
}
