/**
 * Native kernels for the wasm backend: OpenBLAS behind TensorFlow.js's kernel registry. Enabling replaces
 * the wasm backend's BatchMatMul and _FusedMatMul with versions that send large float32 products to the
 * addon and everything else to the stock kernels they wrap; disabling puts the stock kernels back.
 * Either works before or after `tf.setBackend('wasm')`: the wrappers keep the stock setup functions.
 */
import {
  getKernel,
  registerKernel,
  unregisterKernel,
  type KernelConfig,
  type KernelFunc,
} from '@tensorflow/tfjs-core';
import { loadNativeBlas, nativeBlasUnavailableReason, type NativeBlas } from './blas.js';
import { nativeBatchMatMul } from './mat_mul.js';
import { nativeFusedMatMul } from './fused_mat_mul.js';

export { loadNativeBlas, nativeBlasUnavailableReason, type NativeBlas } from './blas.js';

const BACKEND = 'wasm';
const OVERRIDES: Record<string, (blas: NativeBlas, stock: KernelFunc) => KernelFunc> = {
  BatchMatMul: nativeBatchMatMul,
  _FusedMatMul: nativeFusedMatMul,
};

/** The stock configs while the overrides are registered. */
let stockConfigs: KernelConfig[] | null = null;

export interface NativeKernelStatus {
  enabled: boolean;
  /** Why the native kernels are off: the addon is missing or does not load, or they were disabled. */
  reason?: string;
  /** OpenBLAS's build and thread count when the addon is loaded. */
  blas?: string;
  /** wasm kernels currently replaced. */
  kernels: string[];
}

function replace(config: KernelConfig): void {
  unregisterKernel(config.kernelName, config.backendName);
  registerKernel(config);
}

/**
 * Sends large matmuls on the wasm backend to OpenBLAS when the addon is built; otherwise changes nothing
 * and says why. Idempotent. Needs the wasm backend's kernels registered (import '@tensorflow/tfjs-backend-wasm').
 */
export function enableNativeKernels(): NativeKernelStatus {
  if (stockConfigs) return nativeKernelStatus();
  const blas = loadNativeBlas();
  if (!blas) return nativeKernelStatus();
  const stock: KernelConfig[] = [];
  for (const [kernelName, override] of Object.entries(OVERRIDES)) {
    const config = getKernel(kernelName, BACKEND);
    if (!config)
      throw new Error(
        `native kernels: wasm kernel '${kernelName}' is not registered; import the wasm backend first`,
      );
    stock.push(config);
    replace({ ...config, kernelFunc: override(blas, config.kernelFunc) });
  }
  stockConfigs = stock;
  return nativeKernelStatus();
}

/** Puts the stock wasm kernels back. */
export function disableNativeKernels(): void {
  if (!stockConfigs) return;
  for (const config of stockConfigs) replace(config);
  stockConfigs = null;
}

/** For the CLI and logs: whether the native kernels are on, and if not, why. */
export function nativeKernelStatus(): NativeKernelStatus {
  const blas = loadNativeBlas();
  if (stockConfigs)
    return { enabled: true, blas: blas?.config(), kernels: stockConfigs.map((c) => c.kernelName) };
  return {
    enabled: false,
    reason:
      nativeBlasUnavailableReason() ?? 'native kernels are disabled (enableNativeKernels() turns them on)',
    blas: blas?.config(),
    kernels: [],
  };
}

/** One line for the CLI, e.g. "native BLAS: on (OpenBLAS 0.3.21 …; 2 threads) for BatchMatMul, _FusedMatMul". */
export function describeNativeKernels(): string {
  const s = nativeKernelStatus();
  return s.enabled
    ? `native BLAS: on (${s.blas}) for ${s.kernels.join(', ')}`
    : `native BLAS: off (${s.reason})`;
}
