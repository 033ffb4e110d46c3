import * as tf from '@tensorflow/tfjs-core';
import { RmsNormFwd, RmsNormGrad } from '../kernels/rms_norm.js';

/**
 * RMS normalisation over the last axis (Zhang & Sennrich 2019) with its gradient written out:
 *   r = 1/√(mean(x²) + ε),  y = x·r·γ,
 *   ∂L/∂x = r·γ·dy − x·r³·mean(γ·dy·x),  ∂L/∂γ = Σ dy·x·r (sums over all but the last axis).
 * One fused kernel each way where the backend has them (src/engine/kernels/rms_norm.ts), else
 * stock kernels (autodiffed).
 *
 * ```ts
 * const y = rmsNorm(x, gamma, 1e-6); // x [..., e], gamma [e]
 * ```
 */
export function rmsNorm(x: tf.Tensor, gamma: tf.Tensor1D, epsilon: number): tf.Tensor {
  const e = x.shape[x.rank - 1];
  if (gamma.shape[0] !== e) throw new Error(`rmsNorm: gamma has ${gamma.shape[0]} features, input has ${e}`);
  if (tf.getKernel(RmsNormFwd, tf.getBackend())) {
    const [y] = tf.engine().runKernel(RmsNormFwd, { x, gamma }, { epsilon }) as tf.Tensor[];
    return y;
  }
  const ms = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, epsilon))), gamma);
}

tf.registerGradient({
  kernelName: RmsNormFwd,
  inputsToSave: ['x', 'gamma'],
  outputsToSave: [false, true],
  gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
    const [x, gamma, rstd] = saved;
    const dy = Array.isArray(dys) ? dys[0] : dys;
    // Computed here, not in the closures: the tape calls each closure inside its own tidy, which
    // would dispose the other result.
    const [dx, dGamma] = tf.engine().runKernel(RmsNormGrad, { dy, x, rstd, gamma }) as tf.Tensor[];
    return { x: () => dx, gamma: () => dGamma };
  },
});
