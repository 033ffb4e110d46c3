import * as tf from '@tensorflow/tfjs-core';
import { AddRelu } from '../kernels/add_relu.js';
import { ActivationGrad } from '../kernels/activation.js';

/**
 * relu(a + b) for two tensors of one shape: the end of a residual block. Where the engine has the kernels
 * (the oneDNN addon) it is one pass forward and one backward (the gradient, the same for a and b, is dy where
 * the output is positive); elsewhere tf.relu(tf.add(a, b)).
 *
 * ```ts
 * const out = addRelu(h, shortcut); // [B, H, W, C] each
 * ```
 */
export function addRelu<T extends tf.Tensor>(a: T, b: T): T {
  if (!tf.util.arraysEqual(a.shape, b.shape))
    throw new Error(`addRelu: shapes [${a.shape}] and [${b.shape}] differ`);
  const backend = tf.getBackend();
  if (
    a.dtype === 'float32' &&
    b.dtype === 'float32' &&
    tf.getKernel(AddRelu, backend) &&
    tf.getKernel(ActivationGrad, backend)
  )
    return tf.engine().runKernel(AddRelu, { a, b }) as T;
  return tf.relu(tf.add(a, b));
}

tf.registerGradient({
  kernelName: AddRelu,
  outputsToSave: [true],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
    const [y] = saved;
    const d = tf
      .engine()
      .runKernel(
        ActivationGrad,
        { dy: Array.isArray(dy) ? dy[0] : dy, y },
        { activation: 'relu' },
      ) as tf.Tensor;
    // One gradient for both inputs; b's is a clone (shared data) so that the tape can dispose each on its own.
    return { a: () => d, b: () => tf.clone(d) };
  },
});
