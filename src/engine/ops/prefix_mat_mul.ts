import * as tf from '@tensorflow/tfjs-core';
import { PrefixMatMul, PrefixMatMulGradInput, PrefixMatMulGradWeight } from '../kernels/prefix_mat_mul.js';

/**
 * y = x · W[:rows, :k]ᵀ with x [m, k] and W [R, K] (rows ≤ R, k ≤ K): a sub-network's linear layer on a
 * prefix of the full weight. Where the backend has the project's kernels (the native addon), the product
 * reads the prefix in place through GEMM leading dimensions and the weight gradient is written into a
 * full-size zero matrix the same way, so neither the slice nor its gradient's padding is copied. Elsewhere:
 * slice, then matMul.
 *
 * ```ts
 * const y = prefixMatMul(x, weight, 256); // x [64, 512], weight [1024, 784] → y [64, 256]
 * ```
 */
export function prefixMatMul(x: tf.Tensor2D, w: tf.Tensor2D, rows: number, where = 'linear'): tf.Tensor2D {
  const k = x.shape[1];
  if (w.rank !== 2 || rows < 1 || rows > w.shape[0] || k > w.shape[1]) {
    throw new Error(
      `${where}: x [${x.shape}] · W[:${rows}, :${k}]ᵀ does not fit a weight of shape [${w.shape}]`,
    );
  }
  if (x.dtype === 'float32' && tf.getKernel(PrefixMatMul, tf.getBackend()))
    return tf.engine().runKernel(PrefixMatMul, { x, w }, { rows }) as tf.Tensor2D;
  const box = rows === w.shape[0] && k === w.shape[1] ? w : tf.slice(w, [0, 0], [rows, k]);
  return tf.matMul(x, box, false, true);
}

tf.registerGradient({
  kernelName: PrefixMatMul,
  inputsToSave: ['x', 'w'],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
    const [x, w] = saved;
    const d = Array.isArray(dy) ? dy[0] : dy;
    return {
      // dx = dy · W[:rows, :k]; dW = [dyᵀ · x, 0; 0, 0], the full weight's shape
      x: () =>
        tf.engine().runKernel(PrefixMatMulGradInput, { dy: d, w }, { k: x.shape[1] as number }) as tf.Tensor,
      w: () => tf.engine().runKernel(PrefixMatMulGradWeight, { dy: d, x }, { shape: w.shape }) as tf.Tensor,
    };
  },
});
