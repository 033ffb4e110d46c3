/**
 * The project's batch-norm kernels (src/engine/kernels/batch_norm_train.ts) on the wasm backend, computed by
 * the addon on the wasm heap in place. Same inputs, outputs and formulas; the JavaScript loops stay the
 * fallback for the portable path.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { NativeBlas } from './blas.js';

type Inputs = Record<string, tf.TensorInfo>;

function allFloat32(inputs: Inputs): boolean {
  return Object.values(inputs).every((t) => t.dtype === 'float32');
}

export function nativeBatchNormTrain(blas: NativeBlas, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const inputs = args.inputs as Inputs;
    if (!allFloat32(inputs)) return fallback(args);
    const { x, gamma, beta } = inputs;
    const { epsilon } = args.attrs as { epsilon: number };
    const backend = args.backend as BackendWasm;
    const C = x.shape[x.shape.length - 1];
    const outs = [
      backend.makeOutput(x.shape, 'float32'),
      backend.makeOutput([C], 'float32'),
      backend.makeOutput([C], 'float32'),
    ];
    // Views only after the allocations: makeOutput may grow the heap and detach older views.
    const view = (t: tf.TensorInfo) => backend.typedArrayFromHeap(t) as Float32Array;
    blas.batchNormTrain(
      view(x),
      view(gamma),
      view(beta),
      view(outs[0]),
      view(outs[1]),
      view(outs[2]),
      C,
      epsilon,
    );
    return outs;
  };
}

export function nativeBatchNormTrainGrad(blas: NativeBlas, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const inputs = args.inputs as Inputs;
    if (!allFloat32(inputs)) return fallback(args);
    const { dy, x, mean, rstd, gamma } = inputs;
    const backend = args.backend as BackendWasm;
    const C = x.shape[x.shape.length - 1];
    const outs = [
      backend.makeOutput(x.shape, 'float32'),
      backend.makeOutput([C], 'float32'),
      backend.makeOutput([C], 'float32'),
    ];
    const view = (t: tf.TensorInfo) => backend.typedArrayFromHeap(t) as Float32Array;
    blas.batchNormTrainGrad(
      view(dy),
      view(x),
      view(mean),
      view(rstd),
      view(gamma),
      view(outs[0]),
      view(outs[1]),
      view(outs[2]),
      C,
    );
    return outs;
  };
}
