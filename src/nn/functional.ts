/** Parameter-free layers: activations, pooling, dropout. */
import * as tf from '@tensorflow/tfjs-core';
import type { ForwardContext } from './module.js';
import { gelu } from '../engine/ops/gelu.js';

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

export { gelu };

/** [B, H, W, C] → [B, C]. */
export function globalAvgPool(x: tf.Tensor4D): tf.Tensor2D {
  return tf.mean(x, [1, 2]) as tf.Tensor2D;
}

/** Max pooling; `padding` p > 0 pads p per side with −∞ (PyTorch's MaxPool2d(padding=p)). */
export function maxPool(
  x: tf.Tensor4D,
  size: number,
  stride = size,
  padding: 'same' | 'valid' | number = 'same',
): tf.Tensor4D {
  return tf.maxPool(x, size, stride, padding);
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
