import * as tf from '@tensorflow/tfjs-core';
import { Rotary } from '../kernels/rotary.js';

/** rotate_half as a constant matrix: [x1, x2] · R = [−x2, x1] (the composed path's one matmul). */
const rotations = new Map<number, tf.Tensor2D>();
function rotation(d: number): tf.Tensor2D {
  let r = rotations.get(d);
  if (!r || r.isDisposed) {
    const m = new Float32Array(d * d);
    const half = d / 2;
    for (let i = 0; i < half; i++) {
      m[(i + half) * d + i] = -1; // out[i] = −x[i + d/2]
      m[i * d + i + half] = 1; // out[i + d/2] = x[i]
    }
    r = tf.keep(tf.tensor2d(m, [d, d]));
    rotations.set(d, r);
  }
  return r;
}

/**
 * y = x·cos + rotate_half(x)·sin over the last two axes of x [..., T, d] (cos, sin: [T, d]); the
 * gradient is the inverse rotation (sin negated). One fused kernel where the backend has it
 * (src/engine/kernels/rotary.ts), else stock kernels with the same result.
 *
 * ```ts
 * const q2 = rotate(q, cos, sin); // q [B, h, T, d] at the positions of the cos/sin rows
 * ```
 */
export function rotate(x: tf.Tensor, cos: tf.Tensor2D, sin: tf.Tensor2D, inverse = false): tf.Tensor {
  const d = x.shape[x.rank - 1];
  if (d % 2 !== 0) throw new Error(`rotate: head size ${d} must be even`);
  if (tf.getKernel(Rotary, tf.getBackend()))
    return tf.engine().runKernel(Rotary, { x, cos, sin }, { inverse }) as tf.Tensor;
  const rotated = tf.reshape(tf.matMul(tf.reshape(x, [-1, d]), rotation(d)), x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, inverse ? tf.neg(sin) : sin));
}

tf.registerGradient({
  kernelName: Rotary,
  inputsToSave: ['cos', 'sin'],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const [cos, sin] = saved as tf.Tensor2D[];
    const g = Array.isArray(dy) ? dy[0] : dy;
    const inverse = (attrs as { inverse: boolean }).inverse;
    // The tables are constants: zero gradients keep the tape complete.
    return {
      x: () => rotate(g, cos, sin, !inverse),
      cos: () => tf.zerosLike(cos),
      sin: () => tf.zerosLike(sin),
    };
  },
});
