/**
 * The engine boundary: every other folder imports TensorFlow.js through here (or through
 * `@tensorflow/tfjs-core` for types and ops) and calls `initEngine` once before work starts.
 */
import * as tf from '@tensorflow/tfjs-core';
// Gradients: the union package in Node, tfjs-core's own registrations in browsers (package.json "imports").
import '#tfjs-gradients';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerProjectKernels } from './kernels/index.js';

export type BackendName = 'wasm' | 'cpu' | 'webgpu';
export const BACKENDS: readonly BackendName[] = ['wasm', 'cpu', 'webgpu'];

export function parseBackend(name: string, where = 'backend'): BackendName {
  if ((BACKENDS as readonly string[]).includes(name)) return name as BackendName;
  throw new Error(`${where}: unknown backend '${name}'; choose one of ${BACKENDS.join(', ')}`);
}

async function prepareWebGpuInNode(): Promise<void> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return; // a browser, or already set up
  let webgpu: { create: (o: string[]) => unknown; globals: Record<string, unknown> };
  try {
    webgpu = (await import('webgpu' as string)) as typeof webgpu;
  } catch {
    throw new Error(
      "backend 'webgpu' needs a WebGPU implementation: in Node install the optional package 'webgpu' (npm i webgpu), in a browser use one with WebGPU enabled",
    );
  }
  Object.assign(globalThis, webgpu.globals);
  Object.defineProperty(globalThis, 'navigator', {
    value: { ...(g.navigator ?? {}), gpu: webgpu.create([]), userAgent: 'node' },
    configurable: true,
  });
}

export interface EngineOptions {
  /**
   * In Node on `wasm`: route the hot kernels (matmul, convolution and their gradients) to the
   * native OpenBLAS addon when it was built (default true). Without it, the portable wasm path.
   */
  native?: boolean;
}

let initialised = false;

/** Has `initEngine` run (loading weights before it fails for reasons unrelated to the files)? */
export function engineInitialised(): boolean {
  return initialised;
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
let nativeLine = 'native BLAS: not used';

/** One line saying whether the native kernels are on, and why not when they are off. */
export function engineDescription(): string {
  return `backend ${tf.getBackend()}; ${nativeLine}`;
}

/** Select and initialise a backend; registers the kernels the project adds to it. */
export async function initEngine(
  name: BackendName = 'wasm',
  options: EngineOptions = {},
): Promise<BackendName> {
  // Silences the "install tfjs-node" banner; tfjs-node cannot be installed here and the project
  // provides its own fast paths instead.
  tf.env().set('PROD', true);
  registerProjectKernels();
  if (name === 'wasm' && isNode) {
    // Imported lazily so that browser bundles never pull in node:fs / the addon loader.
    const native = await import('./native/index.js');
    if (options.native ?? process.env.SORTEDNET_NATIVE !== '0') {
      native.enableNativeKernels();
    } else {
      native.disableNativeKernels();
    }
    nativeLine = native.describeNativeKernels();
  }
  if (name === 'webgpu') {
    await prepareWebGpuInNode();
    await import('@tensorflow/tfjs-backend-webgpu');
  }
  const ok = await tf.setBackend(name);
  if (!ok)
    throw new Error(`backend '${name}' failed to initialise on this machine; try --backend wasm or cpu`);
  await tf.ready();
  initialised = true;
  return name;
}

export function currentBackend(): BackendName {
  return tf.getBackend() as BackendName;
}
