import * as tf from '@tensorflow/tfjs-core';
import type { FusedActivation } from '../kernels/activation.js';

/** `activation` applied to y with tfjs ops: the composed path where a kernel cannot fuse it. */
export function activate<T extends tf.Tensor>(y: T, activation: FusedActivation): T {
  return activation === 'relu' ? tf.relu(y) : activation === 'relu6' ? tf.relu6(y) : y;
}
