import * as tf from '@tensorflow/tfjs-core';
import type { FusedActivation } from '../kernels/activation.js';

/**
 * What batchNormTrain and layerNorm share: the check of γ and β against the normalised axis, and the path
 * through the project's fused kernels (src/engine/kernels/), whose forward kernel returns [y, mean, rstd]
 * and whose backward kernel returns [dx, dγ, dβ] from (dy, x, mean, rstd, γ).
 */
export function checkAffine(op: string, what: string, gamma: tf.Tensor, beta: tf.Tensor, size: number): void {
  if (gamma.shape[0] !== size || beta.shape[0] !== size) {
    throw new Error(`${op}: gamma/beta have ${gamma.shape[0]}/${beta.shape[0]} ${what}, input has ${size}`);
  }
}

/**
 * Registers the backward kernel as the forward kernel's gradient on the tape, so the fused path needs no
 * customGrad wrapper (which cost ~0.3 ms a call in clones and bookkeeping, a tenth of a small
 * sub-network's step). One backward kernel gives all three gradients.
 */
export function registerFusedNormGradient(forward: string, backward: string): void {
  tf.registerGradient({
    kernelName: forward,
    // beta only for a fused activation (batch norm), whose mask the backward kernel recomputes from it.
    inputsToSave: ['x', 'gamma', 'beta'],
    outputsToSave: [false, true, true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x, gamma, beta, mean, rstd] = saved;
      const dy = Array.isArray(dys) ? dys[0] : dys;
      const activation = attrs.activation;
      const inputs: tf.NamedTensorMap =
        activation && activation !== 'linear'
          ? { dy, x, mean, rstd, gamma, beta }
          : { dy, x, mean, rstd, gamma };
      // Computed here, not in the closures: the tape calls each closure inside its own tidy, which would
      // dispose the other two results.
      const [dx, dGamma, dBeta] = tf.engine().runKernel(backward, inputs, { activation }) as tf.Tensor[];
      return { x: () => dx, gamma: () => dGamma, beta: () => dBeta };
    },
  });
}

/** y from the fused forward kernel, or null where the current backend has none (the caller composes). */
export function fusedNorm(
  forward: string,
  x: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
  activation: FusedActivation = 'linear',
): tf.Tensor | null {
  if (!tf.getKernel(forward, tf.getBackend())) return null;
  const [y] = tf.engine().runKernel(forward, { x, gamma, beta }, { epsilon, activation }) as tf.Tensor[];
  return y;
}
