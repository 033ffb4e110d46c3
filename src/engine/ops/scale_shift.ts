import * as tf from '@tensorflow/tfjs-core';
import { ScaleShift, type ScaleShiftAttrs } from '../kernels/scale_shift.js';
import type { FusedActivation } from '../kernels/activation.js';
import { activate } from './activation.js';

/**
 * act(x · scale + shift) with scale and shift per channel (the last axis of x): batch norm in evaluation
 * once its statistics and affine are folded, scale = γ/√(σ² + ε), shift = β − μ·scale. One kernel where
 * the backend has it (src/engine/kernels/scale_shift.ts), else stock kernels. Inference only.
 *
 * ```ts
 * const y = scaleShift(x, scale, shift, 'relu'); // x [N, H, W, C], scale and shift [C]
 * ```
 */
export function scaleShift(
  x: tf.Tensor,
  scale: tf.Tensor1D,
  shift: tf.Tensor1D,
  activation: FusedActivation = 'linear',
): tf.Tensor {
  if (tf.getKernel(ScaleShift, tf.getBackend()) && x.dtype === 'float32') {
    const attrs: ScaleShiftAttrs = { activation };
    return tf
      .engine()
      .runKernel(ScaleShift, { x, scale, shift }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  }
  return activate(tf.add(tf.mul(x, scale), shift), activation);
}
