import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { replaceWasmKernel, stockWasmKernel } from './replace_wasm.js';

export const kernelName = tf.Identity;

/**
 * `Identity` for the `wasm` backend that shares the input's memory (reference-counted, as the `cpu` backend
 * and wasm's own Reshape do) instead of copying it. Why: the tape clones every tensor a gradient saves, so
 * the stock copying kernel moved each saved activation once more per step (125 copies, ~9 ms of a 130 ms
 * ResNet step; `node dist/bench/profile_step.js resnet`). Tensors are immutable and every kernel writes to a
 * fresh output, so sharing cannot be observed.
 */
function identity(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x } = args.inputs as tf.IdentityInputs;
  if (x === undefined) throw new Error(`${kernelName} (wasm): needs an input x`);
  if (x.dtype === 'string') return stockWasmKernel(kernelName)!.kernelFunc(args) as tf.TensorInfo;
  (args.backend as BackendWasm).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** Replaces the stock wasm `Identity`, kept for string tensors. Once only. */
export function replaceIdentityWasm(): void {
  replaceWasmKernel(kernelName, identity);
}
