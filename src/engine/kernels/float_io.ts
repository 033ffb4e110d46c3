import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

/** The backends whose tensors live in memory a JavaScript kernel can read and write in place. */
export const JS_BACKENDS = ['wasm', 'cpu'] as const;

/**
 * Allocates a kernel's float32 outputs on the `wasm` or `cpu` backend and hands back views of its inputs
 * and outputs. Outputs come first: on wasm an allocation can grow the heap and detach older views.
 */
export function floatKernelIO(
  backend: unknown,
  kernel: string,
  inputs: tf.TensorInfo[],
  outputShapes: number[][],
): { ins: Float32Array[]; outs: Float32Array[]; infos: tf.TensorInfo[] } {
  for (const t of inputs) {
    if (t.dtype !== 'float32') throw new Error(`${kernel}: inputs must be float32, got ${t.dtype}`);
  }
  if (typeof backend === 'object' && backend !== null && 'typedArrayFromHeap' in backend) {
    const wasm = backend as unknown as BackendWasm;
    const infos = outputShapes.map((s) => wasm.makeOutput(s, 'float32'));
    const view = (t: tf.TensorInfo) => wasm.typedArrayFromHeap(t) as Float32Array;
    return { ins: inputs.map(view), outs: infos.map(view), infos };
  }
  const cpu = backend as unknown as MathBackendCPU;
  const outs = outputShapes.map((s) => new Float32Array(tf.util.sizeFromShape(s)));
  return {
    ins: inputs.map((t) => cpu.data.get(t.dataId)!.values as Float32Array),
    outs,
    infos: outs.map((values, i) => cpu.makeTensorInfo(outputShapes[i], 'float32', values)),
  };
}

/** One kernel config per JS backend. */
export function jsKernelConfigs(kernelName: string, kernelFunc: tf.KernelFunc): tf.KernelConfig[] {
  return JS_BACKENDS.map((backendName) => ({ kernelName, backendName, kernelFunc }));
}
