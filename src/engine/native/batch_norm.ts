/**
 * The project's batch-norm kernels (src/engine/kernels/batch_norm_train.ts) on the wasm backend, computed by
 * the addon on the wasm heap in place. Same inputs, outputs and formulas; the JavaScript loops stay the
 * fallback for the portable path (and for inputs that are not float32).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO } from '../kernels/float_io.js';
import {
  BatchNormTrain,
  BatchNormTrainGrad,
  normActivation,
  type BatchNormTrainAttrs,
} from '../kernels/batch_norm_train.js';
import type { NativeBlas } from './blas.js';

type Inputs = Record<string, tf.TensorInfo>;

function allFloat32(inputs: Inputs): boolean {
  return Object.values(inputs).every((t) => t.dtype === 'float32');
}

/** x, gamma, beta → y, mean, rstd */
export function nativeBatchNormTrain(blas: NativeBlas, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const inputs = args.inputs as Inputs;
    if (!allFloat32(inputs)) return fallback(args);
    const { x, gamma, beta } = inputs;
    const { epsilon, activation } = args.attrs as unknown as BatchNormTrainAttrs & { epsilon: number };
    const C = x.shape[x.shape.length - 1];
    const { ins, outs, infos } = floatKernelIO(
      args.backend,
      BatchNormTrain,
      [x, gamma, beta],
      [x.shape, [C], [C]],
    );
    blas.batchNormTrain(
      ins[0],
      ins[1],
      ins[2],
      outs[0],
      outs[1],
      outs[2],
      C,
      epsilon,
      normActivation(activation),
    );
    return infos;
  };
}

/** dy, x, mean, rstd, gamma (, beta with a fused activation) → dx, dgamma, dbeta */
export function nativeBatchNormTrainGrad(blas: NativeBlas, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const inputs = args.inputs as Inputs;
    if (!allFloat32(inputs)) return fallback(args);
    const { dy, x, mean, rstd, gamma, beta } = inputs;
    const kind = normActivation((args.attrs as unknown as BatchNormTrainAttrs).activation);
    const C = x.shape[x.shape.length - 1];
    const { ins, outs, infos } = floatKernelIO(
      args.backend,
      BatchNormTrainGrad,
      kind ? [dy, x, mean, rstd, gamma, beta] : [dy, x, mean, rstd, gamma],
      [x.shape, gamma.shape, gamma.shape],
    );
    // γ may be a sorted layer's full vector: its gradient past the C channels used is zero.
    if (gamma.shape[0] > C) for (const o of outs.slice(1)) o.fill(0);
    const [d, xs, m, r, g, b] = ins;
    blas.batchNormTrainGrad(d, xs, m, r, g, outs[0], outs[1], outs[2], C, b ?? null, kind);
    return infos;
  };
}
