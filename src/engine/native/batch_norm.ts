/**
 * The project's batch-norm kernels (src/engine/kernels/batch_norm_train.ts) on the wasm backend, computed by
 * the addon on the wasm heap in place. Same inputs, outputs and formulas; the JavaScript loops stay the
 * fallback for the portable path (and for inputs that are not float32).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO } from '../kernels/float_io.js';
import { BatchNormTrain, BatchNormTrainGrad } from '../kernels/batch_norm_train.js';
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
    const { epsilon } = args.attrs as { epsilon: number };
    const C = x.shape[x.shape.length - 1];
    const { ins, outs, infos } = floatKernelIO(
      args.backend,
      BatchNormTrain,
      [x, gamma, beta],
      [x.shape, [C], [C]],
    );
    blas.batchNormTrain(ins[0], ins[1], ins[2], outs[0], outs[1], outs[2], C, epsilon);
    return infos;
  };
}

/** dy, x, mean, rstd, gamma → dx, dgamma, dbeta */
export function nativeBatchNormTrainGrad(blas: NativeBlas, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const inputs = args.inputs as Inputs;
    if (!allFloat32(inputs)) return fallback(args);
    const { dy, x, mean, rstd, gamma } = inputs;
    const C = x.shape[x.shape.length - 1];
    const { ins, outs, infos } = floatKernelIO(
      args.backend,
      BatchNormTrainGrad,
      [dy, x, mean, rstd, gamma],
      [x.shape, [C], [C]],
    );
    blas.batchNormTrainGrad(ins[0], ins[1], ins[2], ins[3], ins[4], outs[0], outs[1], outs[2], C);
    return infos;
  };
}
