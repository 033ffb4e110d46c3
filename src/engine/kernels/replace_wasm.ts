import * as tf from '@tensorflow/tfjs-core';

/** The stock wasm kernels the project replaced, by kernel name. */
const stocks = new Map<string, tf.KernelConfig>();
const replaced = new Set<string>();

/**
 * Puts `kernelFunc` in place of the wasm backend's `kernelName`, keeping the stock config — with its setup
 * and dispose functions, which bind it to the wasm module when the backend starts — for the inputs the
 * replacement hands back to it, and for benchmarks. Once per kernel: later wrappers (the native kernels)
 * may sit on top of the replacement and must stay.
 */
export function replaceWasmKernel(kernelName: string, kernelFunc: tf.KernelFunc): void {
  if (replaced.has(kernelName)) return;
  replaced.add(kernelName);
  const current = tf.getKernel(kernelName, 'wasm');
  if (current !== undefined) {
    stocks.set(kernelName, current);
    tf.unregisterKernel(kernelName, 'wasm');
  }
  tf.registerKernel({ ...(current ?? { kernelName, backendName: 'wasm' }), kernelFunc });
}

/** The stock wasm kernel a replacement keeps underneath; undefined before the replacement or if it had none. */
export function stockWasmKernel(kernelName: string): tf.KernelConfig | undefined {
  return stocks.get(kernelName);
}
