/**
 * The optional oneDNN addon (native/dnnl/dnnl.c), built at install time beside the OpenBLAS one by
 * native/install.js. Loading never throws: without it convolutions stay on OpenBLAS (or the portable wasm
 * kernels), and `nativeDnnlUnavailableReason()` says why.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Which convolution a `conv` call runs: native/dnnl/dnnl.c's enum. */
export const DnnlPass = { forward: 0, input: 1, filter: 2 } as const;
export type DnnlPassName = keyof typeof DnnlPass;

/** Activations oneDNN fuses into a forward convolution: native/dnnl/dnnl.c's codes. */
export { ACTIVATION_CODE as DnnlActivation } from '../kernels/activation.js';

/**
 * 2-D convolutions on Float32Arrays in place (a view's byteOffset is honoured). Activations are NHWC;
 * weights are addressed through element strides (see `dnnlGeometry`), so a prefix of a larger HWIO tensor
 * is read, and its gradient written, where it lies.
 */
export interface NativeDnnl {
  /**
   * forward: conv(0, g, x, w, y, bias?) overwrites y; input gradient: conv(1, g, dy, w, dx) overwrites dx;
   * filter gradient: conv(2, g, x, dy, dw) overwrites the strided view of dw and leaves the rest alone.
   * Sizes are checked against the geometry: a mismatch throws a RangeError.
   */
  conv(
    pass: number,
    geometry: Int32Array,
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    bias?: Float32Array | null,
  ): void;
  /** dx = dy where the fused activation's output y passed it (kind 1 ReLU: y > 0; 2 ReLU6: 0 < y < 6), else 0. */
  activationGrad(kind: number, dy: Float32Array, y: Float32Array, dx: Float32Array): void;
  /** y = max(a + b, 0) elementwise (a residual block's end); its gradient is activationGrad's. */
  addRelu(a: Float32Array, b: Float32Array, y: Float32Array): void;
  /** The implementation oneDNN picks for a pass, e.g. "jit:avx2 (reordered)". */
  implementation(pass: number, geometry: Int32Array): string;
  /** Sets (with an argument) and returns the threads each call uses. */
  setThreads(n?: number): number;
  /**
   * How primitives lay out their operands; pass a mode to switch. 'nhwc' (default): activations stay NHWC and
   * only weights are reordered, falling back to 'blocked' per problem where oneDNN has no JIT kernel for NHWC;
   * 'blocked': activations reordered into oneDNN's blocked layouts too; 'plain': NHWC/HWIO, its GEMM fallback.
   */
  layout(mode?: DnnlLayout): DnnlLayout;
  /** e.g. "oneDNN 2.6.3; 2 threads; 14 primitives cached". */
  config(): string;
}

export type DnnlLayout = 'nhwc' | 'blocked' | 'plain';

const ADDON = 'native/dnnl/build/Release/sortednet_dnnl.node';
const NOT_BUILT = `${ADDON} is not built: apt-get install libdnnl-dev, then npm rebuild`;

/** Every function this code calls on the addon (the compiler checks the list is complete). */
const FUNCTIONS: Record<keyof NativeDnnl, true> = {
  conv: true,
  activationGrad: true,
  addRelu: true,
  implementation: true,
  setThreads: true,
  layout: true,
  config: true,
};

let loaded: { dnnl: NativeDnnl | null; reason: string | null } | null = null;

function addonCandidates(): string[] {
  return ['../../../', '../../../../'].map((up) => fileURLToPath(new URL(up + ADDON, import.meta.url)));
}

/** The addon, or null when it is not built or does not load (see `nativeDnnlUnavailableReason`). */
export function loadNativeDnnl(): NativeDnnl | null {
  if (loaded) return loaded.dnnl;
  if (process.env.SORTEDNET_DNNL === '0') {
    loaded = { dnnl: null, reason: 'oneDNN is switched off (SORTEDNET_DNNL=0)' };
    return null;
  }
  const path = addonCandidates().find((p) => existsSync(p));
  if (!path) {
    loaded = { dnnl: null, reason: NOT_BUILT };
    return null;
  }
  // oneDNN runs on OpenMP, whose idle threads spin by default: on a machine with more busy threads than cores
  // the spinning starves the thread doing the work (a batch-1 ResNet forward went from 6 ms to 230–700 ms at
  // load 16 on 2 cores, bench/conv_dnnl.ts). libgomp reads the policy once, when the addon loads it.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
  try {
    const dnnl = createRequire(import.meta.url)(path) as NativeDnnl;
    const lacking = Object.keys(FUNCTIONS).filter(
      (f) => typeof (dnnl as unknown as Record<string, unknown>)[f] !== 'function',
    );
    if (lacking.length > 0) {
      loaded = {
        dnnl: null,
        reason: `${path} was built from older sources (it lacks ${lacking.join(', ')}); rebuild it with npm rebuild`,
      };
      return null;
    }
    dnnl.config();
    loaded = { dnnl, reason: null };
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    loaded = { dnnl: null, reason: `${path} does not load (${message}); rebuild it with npm rebuild` };
  }
  return loaded.dnnl;
}

/** Why `loadNativeDnnl()` returned null, or null when the addon is loaded. */
export function nativeDnnlUnavailableReason(): string | null {
  loadNativeDnnl();
  return loaded?.reason ?? null;
}

/** One convolution as native/dnnl/dnnl.c reads it. */
export interface DnnlConv {
  batch: number;
  inH: number;
  inW: number;
  /** Channels of x (and of the weight view's input axis × groups). */
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  fH: number;
  fW: number;
  strideH: number;
  strideW: number;
  dilationH: number;
  dilationW: number;
  padTop: number;
  padLeft: number;
  padBottom: number;
  padRight: number;
  groups: number;
  /** Element strides of the weight's (group, out, in, fH, fW) axes in its array. */
  weightStrides: [number, number, number, number, number];
  activation?: number;
  bias?: boolean;
}

/**
 * Strides of an HWIO weight view W[:, :, :inC, :outC] inside a [fH, fW, fullIn, fullOut] tensor, for an
 * ordinary convolution (groups 1).
 */
export function hwioStrides(
  fW: number,
  fullIn: number,
  fullOut: number,
): [number, number, number, number, number] {
  return [0, 1, fullOut, fW * fullIn * fullOut, fullIn * fullOut];
}

/**
 * Strides of a depthwise weight [fH, fW, C, M] (the first `C` channels of a [fH, fW, fullC, M] tensor):
 * group c's output m sits at c·M + m.
 */
export function depthwiseStrides(
  fW: number,
  fullC: number,
  multiplier: number,
): [number, number, number, number, number] {
  return [multiplier, 1, fullC * multiplier, fW * fullC * multiplier, fullC * multiplier];
}

/** The addon's geometry vector, in native/dnnl/dnnl.c's order. */
export function dnnlGeometry(c: DnnlConv): Int32Array {
  return Int32Array.from([
    c.batch,
    c.inH,
    c.inW,
    c.inC,
    c.outH,
    c.outW,
    c.outC,
    c.fH,
    c.fW,
    c.strideH,
    c.strideW,
    c.dilationH,
    c.dilationW,
    c.padTop,
    c.padLeft,
    c.padBottom,
    c.padRight,
    c.groups,
    ...c.weightStrides,
    c.activation ?? 0,
    c.bias ? 1 : 0,
  ]);
}
