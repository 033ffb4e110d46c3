/**
 * Native kernels for the wasm backend: OpenBLAS and oneDNN behind TensorFlow.js's kernel registry. Enabling
 * replaces the wasm backend's matmul and convolution kernels with versions that send large float32 work to
 * the addons (convolutions to oneDNN where it is built, else OpenBLAS) and everything else to the kernels
 * they wrap; disabling puts those back. Either works before or
 * after `tf.setBackend('wasm')`: the wrappers keep the wrapped kernels' setup functions.
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
import {
  nativeConv2D,
  nativeConv2DBackpropFilter,
  nativeConv2DBackpropInput,
  nativeFusedConv2D,
} from './conv2d.js';
import { nativeBatchNormTrain, nativeBatchNormTrainGrad } from './batch_norm.js';
import { BatchNormTrain, BatchNormTrainGrad } from '../kernels/batch_norm_train.js';
import {
  nativePrefixMatMul,
  nativePrefixMatMulGradInput,
  nativePrefixMatMulGradWeight,
} from './prefix_mat_mul.js';
import { PrefixMatMul, PrefixMatMulGradInput, PrefixMatMulGradWeight } from '../kernels/prefix_mat_mul.js';
import { nativeSparsePerSampleConv2d } from './sparse_per_sample_conv2d.js';
import { SparsePerSampleConv2D } from '../kernels/sparse_per_sample_conv2d.js';
import { nativeCachedAttention } from './cached_attention.js';
import { nativeRmsNorm, nativeRotary, nativeScaleShift } from './inference_kernels.js';
import { ScaleShift } from '../kernels/scale_shift.js';
import { RmsNormFwd } from '../kernels/rms_norm.js';
import { Rotary } from '../kernels/rotary.js';
import { CachedAttention } from '../kernels/cached_attention.js';

import { loadNativeDnnl, nativeDnnlUnavailableReason, type NativeDnnl } from './dnnl.js';
import {
  dnnlConv2D,
  dnnlConv2DBackpropFilter,
  dnnlConv2DBackpropInput,
  dnnlDepthwiseConv2D,
  dnnlDepthwiseConv2DBackpropFilter,
  dnnlDepthwiseConv2DBackpropInput,
  dnnlFusedConv2D,
  dnnlFusedDepthwiseConv2D,
} from './dnnl_conv2d.js';
import {
  dnnlActivationGrad,
  dnnlAddRelu,
  dnnlPrefixConv2D,
  dnnlPrefixConv2DGradFilter,
  dnnlPrefixConv2DGradInput,
} from './dnnl_prefix_conv2d.js';
import { AddRelu } from '../kernels/add_relu.js';
import { PrefixConv2D, PrefixConv2DGradFilter, PrefixConv2DGradInput } from '../kernels/prefix_conv2d.js';
import { ActivationGrad } from '../kernels/activation.js';

export { loadNativeBlas, nativeBlasUnavailableReason, addonMismatch, type NativeBlas } from './blas.js';
export { loadNativeDnnl, nativeDnnlUnavailableReason, type NativeDnnl } from './dnnl.js';

const BACKEND = 'wasm';
type Override = (blas: NativeBlas, fallback: KernelFunc) => KernelFunc;
const OVERRIDES: Record<string, Override> = {
  BatchMatMul: nativeBatchMatMul,
  _FusedMatMul: nativeFusedMatMul,
  Conv2D: nativeConv2D,
  FusedConv2D: nativeFusedConv2D,
  Conv2DBackpropInput: nativeConv2DBackpropInput,
  // tfjs-backend-wasm 4.22 has none; wraps the project's portable one when src/engine/kernels/ registers it.
  Conv2DBackpropFilter: nativeConv2DBackpropFilter,
  // The project's fused training batch norm (src/engine/kernels/), its JavaScript loops kept as the fallback.
  [BatchNormTrain]: nativeBatchNormTrain,
  [BatchNormTrainGrad]: nativeBatchNormTrainGrad,
  // A sub-network's linear layer on the weight prefix in place (src/engine/ops/prefix_mat_mul.ts); native
  // only: without it the op slices and calls matMul.
  [PrefixMatMul]: nativePrefixMatMul,
  [PrefixMatMulGradInput]: nativePrefixMatMulGradInput,
  [PrefixMatMulGradWeight]: nativePrefixMatMulGradWeight,
  // Compact PAD layers' sparse per-sample convolution (src/engine/ops/sparse_per_sample_conv2d.ts); native
  // only: without it the op scatters each sample's dense kernel and runs a dense per-sample convolution.
  [SparsePerSampleConv2D]: nativeSparsePerSampleConv2d,
  // A decoding step's attention over its key/value cache, appending in place (src/engine/ops/cached_attention.ts);
  // without the addon wasm has no such kernel and decoding concatenates the cache.
  [CachedAttention]: nativeCachedAttention,
  // The per-row normalisation and rotary kernels, bit for bit the JavaScript ones.
  [RmsNormFwd]: nativeRmsNorm,
  [Rotary]: nativeRotary,
  // Batch norm in evaluation, folded into a scale and shift per channel, its activation fused.
  [ScaleShift]: nativeScaleShift,
};

type DnnlOverride = (dnnl: NativeDnnl, under: KernelFunc) => KernelFunc;
/** Registered over the OpenBLAS ones (which stay underneath for what oneDNN declines). */
const DNNL_OVERRIDES: Record<string, DnnlOverride> = {
  Conv2D: dnnlConv2D,
  FusedConv2D: dnnlFusedConv2D,
  Conv2DBackpropInput: dnnlConv2DBackpropInput,
  Conv2DBackpropFilter: dnnlConv2DBackpropFilter,
  DepthwiseConv2dNative: dnnlDepthwiseConv2D,
  FusedDepthwiseConv2D: dnnlFusedDepthwiseConv2D,
  DepthwiseConv2dNativeBackpropInput: dnnlDepthwiseConv2DBackpropInput,
  DepthwiseConv2dNativeBackpropFilter: dnnlDepthwiseConv2DBackpropFilter,
  // A sub-network's convolution on the weight prefix in place (src/engine/ops/prefix_conv2d.ts); oneDNN
  // only: without it the op slices and calls conv2d.
  [PrefixConv2D]: dnnlPrefixConv2D,
  [PrefixConv2DGradInput]: dnnlPrefixConv2DGradInput,
  [PrefixConv2DGradFilter]: dnnlPrefixConv2DGradFilter,
  [ActivationGrad]: dnnlActivationGrad,
  [AddRelu]: dnnlAddRelu,
};

/** What enabling replaced: the wrapped config (null where the backend had none) and the wrapper. */
interface Replaced {
  kernelName: string;
  wrapped: KernelConfig | null;
  kernelFunc: KernelFunc;
}
let replaced: Replaced[] | null = null;
let withDnnl = true;

export interface NativeKernelOptions {
  /** Convolutions on oneDNN where its addon is built (default true); false keeps them on OpenBLAS. */
  dnnl?: boolean;
}

export interface NativeKernelStatus {
  enabled: boolean;
  /** Why the native kernels are off: the addon is missing or does not load, or they were disabled. */
  reason?: string;
  /** OpenBLAS's build and thread count when the addon is loaded. */
  blas?: string;
  /** oneDNN's version and thread count when its addon is loaded. */
  dnnl?: string;
  /** wasm kernels currently served by the native path. */
  kernels: string[];
}

function register(config: KernelConfig): void {
  if (getKernel(config.kernelName, config.backendName))
    unregisterKernel(config.kernelName, config.backendName);
  registerKernel(config);
}

/** A stand-in for a kernel the backend lacks, for the inputs the native path declines. */
function missing(kernelName: string): KernelFunc {
  return () => {
    throw new Error(
      `${kernelName}: the wasm backend has no kernel for this case (native path: NHWC float32 only)`,
    );
  };
}

/**
 * Sends large matmuls and convolutions on the wasm backend to OpenBLAS when the addon is built; otherwise
 * changes nothing and says why. Idempotent. Call it after the project's own kernels are registered
 * (initEngine does both) so that those are the ones wrapped.
 */
export function enableNativeKernels(options: NativeKernelOptions = {}): NativeKernelStatus {
  const useDnnl = options.dnnl ?? true;
  if (replaced && withDnnl === useDnnl) return nativeKernelStatus();
  disableNativeKernels();
  withDnnl = useDnnl;
  const blas = loadNativeBlas();
  const dnnl = useDnnl ? loadNativeDnnl() : null;
  if (!blas && !dnnl) return nativeKernelStatus();
  const wrap = (kernelName: string, make: (under: KernelFunc) => KernelFunc): Replaced => {
    const wrapped = getKernel(kernelName, BACKEND) ?? null;
    const kernelFunc = make(wrapped?.kernelFunc ?? missing(kernelName));
    register({ ...(wrapped ?? { kernelName, backendName: BACKEND }), kernelFunc });
    return { kernelName, wrapped, kernelFunc };
  };
  replaced = [];
  if (blas)
    for (const [kernelName, override] of Object.entries(OVERRIDES))
      replaced.push(wrap(kernelName, (under) => override(blas, under)));
  if (dnnl) {
    // The same threads as OpenBLAS, so that neither library oversubscribes the cores the other uses.
    const threads = /; (\d+) threads/.exec(blas?.config() ?? '')?.[1];
    if (threads) dnnl.setThreads(Number(threads));
    for (const [kernelName, override] of Object.entries(DNNL_OVERRIDES))
      replaced.push(wrap(kernelName, (under) => override(dnnl, under)));
  }
  return nativeKernelStatus();
}

/** Puts the wrapped kernels back (a kernel registered over a wrapper since stays as it is). */
export function disableNativeKernels(): void {
  if (!replaced) return;
  // Last wrapped first: oneDNN's wrappers sit over OpenBLAS's.
  for (const { kernelName, wrapped, kernelFunc } of [...replaced].reverse()) {
    if (getKernel(kernelName, BACKEND)?.kernelFunc !== kernelFunc) continue;
    if (wrapped) register(wrapped);
    else unregisterKernel(kernelName, BACKEND);
  }
  replaced = null;
}

/** For the CLI and logs: whether the native kernels are on, and if not, why. */
export function nativeKernelStatus(): NativeKernelStatus {
  const blas = loadNativeBlas();
  const dnnl = replaced && !withDnnl ? null : loadNativeDnnl();
  const libraries = { blas: blas?.config(), dnnl: dnnl?.config() };
  if (replaced)
    return { enabled: true, ...libraries, kernels: [...new Set(replaced.map((r) => r.kernelName))] };
  const reason =
    blas || dnnl
      ? 'native kernels are disabled (enableNativeKernels() turns them on)'
      : `${nativeBlasUnavailableReason()}; ${nativeDnnlUnavailableReason()}`;
  return { enabled: false, reason, ...libraries, kernels: [] };
}

/**
 * One line for the CLI, e.g. "native BLAS: on (OpenBLAS 0.3.21 …; 2 threads) for BatchMatMul, …; oneDNN:
 * on (oneDNN 2.6.3; 2 threads) for convolutions".
 */
export function describeNativeKernels(): string {
  const s = nativeKernelStatus();
  if (!s.enabled) return `native BLAS: off (${s.reason})`;
  const blas = s.blas
    ? `native BLAS: on (${s.blas}) for ${s.kernels.filter((k) => k in OVERRIDES).join(', ')}`
    : `native BLAS: off (${nativeBlasUnavailableReason()})`;
  const dnnl = s.dnnl
    ? `oneDNN: on (${s.dnnl}) for convolutions`
    : `oneDNN: off (${nativeDnnlUnavailableReason() ?? 'disabled'})`;
  return `${blas}; ${dnnl}`;
}
