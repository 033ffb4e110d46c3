import * as tf from '@tensorflow/tfjs-core';
import { BatchNormTrain, BatchNormTrainGrad, type BatchNormTrainAttrs } from '../kernels/batch_norm_train.js';
import { fusedNorm, registerFusedNormGradient } from './fused_norm.js';
import { activate } from './activation.js';

/**
 * Training-mode batch normalisation over the N, H, W axes of an NHWC tensor with its gradient
 * written out (Ioffe & Szegedy 2015, §3):
 *   x̂ = (x − μ)/σ,  y = γ x̂ + β,
 *   ∂L/∂x = γ/σ · (dy − Σdy/N − x̂ · Σ(dy x̂)/N),  ∂L/∂γ = Σ dy x̂,  ∂L/∂β = Σ dy.
 * Why: autodiff through tf.moments + tf.batchNorm makes tfjs broadcast with Tile, which on wasm
 * took ~40% of a ResNet training step; this form needs only elementwise ops and sums.
 *
 * `activation` (ReLU or ReLU6) is applied to y in the same pass where the fused kernels run, its gradient
 * folded into the backward kernel; elsewhere it is the tfjs op after the normalisation.
 * γ and β may be longer than x's channels (a sorted sub-network's prefix of the full layer's): the fused
 * kernels read their first C entries in place and give gradients of the full length, zero past C; elsewhere
 * they are sliced.
 *
 * ```ts
 * const y = batchNormTrain(x, gamma, beta, 1e-5); // x [B, H, W, C], gamma/beta [C]
 * const h = batchNormTrain(x, gamma, beta, 1e-5, 'relu'); // relu(y)
 * ```
 */
export function batchNormTrain(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
  activation: BatchNormTrainAttrs['activation'] = 'linear',
): tf.Tensor4D {
  const c = x.shape[3];
  if (gamma.shape[0] < c || beta.shape[0] !== gamma.shape[0])
    throw new Error(
      `batchNormTrain: gamma/beta have ${gamma.shape[0]}/${beta.shape[0]} channels, input has ${c} (they need as many, or more, and equal)`,
    );
  const y = fusedNorm(BatchNormTrain, x, gamma, beta, epsilon, activation);
  if (y) return y as tf.Tensor4D;
  const [g, b] = gamma.shape[0] === c ? [gamma, beta] : [tf.slice(gamma, 0, c), tf.slice(beta, 0, c)];
  const normed = composedBatchNorm(x, g, b, epsilon);
  return activate(normed, activation);
}

/** The same with tfjs ops and a custom gradient, where the fused kernels are not registered. */
function composedBatchNorm(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
): tf.Tensor4D {
  const c = x.shape[3];
  const n = x.size / c;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const mean = tf.mean(xIn, [0, 1, 2]);
    const centred = tf.sub(xIn, mean);
    const variance = tf.mean(tf.square(centred), [0, 1, 2]);
    const rstd = tf.rsqrt(tf.add(variance, epsilon));
    const xhat = tf.mul(centred, rstd);
    save([xhat, rstd, g]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xh, rs, gm] = saved;
        const dBeta = tf.sum(dy, [0, 1, 2]);
        const dGamma = tf.sum(tf.mul(dy, xh), [0, 1, 2]);
        const inner = tf.sub(tf.sub(dy, tf.div(dBeta, n)), tf.mul(xh, tf.div(dGamma, n)));
        return [tf.mul(inner, tf.mul(gm, rs)), dGamma, dBeta];
      },
    };
  });
  return op(x, gamma, beta) as tf.Tensor4D;
}

// The fused kernels' gradient on the tape (src/engine/ops/fused_norm.ts).
registerFusedNormGradient(BatchNormTrain, BatchNormTrainGrad);
