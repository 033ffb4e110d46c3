import * as tf from '@tensorflow/tfjs-core';
import { LayerNormFwd, LayerNormGrad } from '../kernels/layer_norm.js';
import { checkAffine, fusedNorm, registerFusedNormGradient } from './fused_norm.js';

/**
 * Layer normalisation over the last axis (Ba et al. 2016) with its gradient written out:
 *   x̂ = (x − μ)/σ,  y = γ x̂ + β,  g = dy·γ,
 *   ∂L/∂x = (g − mean(g) − x̂ · mean(g x̂)) / σ,  ∂L/∂γ = Σ dy x̂,  ∂L/∂β = Σ dy
 * (means over the last axis, sums over all the others).
 * Why: autodiff through tf.moments broadcasts with extra Sub/Mul/Tile kernels per call; this form
 * keeps the backward pass to elementwise ops and two reductions.
 *
 * ```ts
 * const y = layerNorm(x, gamma, beta, 1e-5); // x [..., e], gamma/beta [e]
 * ```
 */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): tf.Tensor {
  const e = x.shape[x.rank - 1];
  checkAffine('layerNorm', 'features', gamma, beta, e);
  const y = fusedNorm(LayerNormFwd, x, gamma, beta, epsilon);
  if (y) return y;
  const outer = Array.from({ length: x.rank - 1 }, (_, i) => i);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const mean = tf.mean(xIn, -1, true);
    const centred = tf.sub(xIn, mean);
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), epsilon));
    const xhat = tf.mul(centred, rstd);
    save([xhat, rstd, g]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xh, rs, gm] = saved;
        const gx = tf.mul(dy, gm);
        const inner = tf.sub(
          tf.sub(gx, tf.mean(gx, -1, true)),
          tf.mul(xh, tf.mean(tf.mul(gx, xh), -1, true)),
        );
        return [tf.mul(inner, rs), tf.sum(tf.mul(dy, xh), outer), tf.sum(dy, outer)];
      },
    };
  });
  return op(x, gamma, beta);
}

// The fused kernels' gradient on the tape (src/engine/ops/fused_norm.ts).
registerFusedNormGradient(LayerNormFwd, LayerNormGrad);
