/**
 * The engine boundary: every other folder imports TensorFlow.js through here (or through
 * `@tensorflow/tfjs-core` for types and ops) and calls `initEngine` once before work starts.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's Node build registers no gradients; the union package registers all of them.
import '@tensorflow/tfjs';
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

/** Select and initialise a backend; registers the kernels the project adds to it. */
export async function initEngine(name: BackendName = 'wasm'): Promise<BackendName> {
  // Silences the "install tfjs-node" banner; tfjs-node cannot be installed here and the project
  // provides its own fast paths instead.
  tf.env().set('PROD', true);
  registerProjectKernels();
  if (name === 'webgpu') {
    await prepareWebGpuInNode();
    await import('@tensorflow/tfjs-backend-webgpu');
  }
  const ok = await tf.setBackend(name);
  if (!ok)
    throw new Error(`backend '${name}' failed to initialise on this machine; try --backend wasm or cpu`);
  await tf.ready();
  return name;
}

export function currentBackend(): BackendName {
  return tf.getBackend() as BackendName;
}
