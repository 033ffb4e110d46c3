/**
 * The optional OpenBLAS addon (native/blas.c), built at install time by native/install.js. Loading
 * never throws: without the addon the engine keeps TensorFlow.js's own kernels, and
 * `nativeBlasUnavailableReason()` says why.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Codes of the activations `biasActivation` applies: native/blas.c's enum, in TensorFlow.js's order. */
export const NativeActivation = {
  linear: 0,
  relu: 1,
  relu6: 2,
  prelu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  elu: 6,
} as const;
export type NativeActivationName = keyof typeof NativeActivation;

/**
 * Row-major single-precision BLAS on Float32Arrays, in place on the caller's memory (a view's byteOffset is
 * honoured). C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C, op(X) = X or Xᵀ; `ld*` are the row
 * lengths of the stored matrices. Sizes are checked against the arrays: a mismatch throws a RangeError.
 */
export interface NativeBlas {
  sgemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    lda: number,
    B: Float32Array,
    ldb: number,
    beta: number,
    C: Float32Array,
    ldc: number,
  ): void;
  /** `batch` products; matrix i of X starts at element i · strideX, and a stride of 0 broadcasts one matrix. */
  sgemmStridedBatched(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    lda: number,
    strideA: number,
    B: Float32Array,
    ldb: number,
    strideB: number,
    beta: number,
    C: Float32Array,
    ldc: number,
    strideC: number,
    batch: number,
  ): void;
  /**
   * C[r, c] = act(C[r, c] + bias[c]) in place over a dense rows × cols block (`activation` from
   * NativeActivation); bias and preluWeights (prelu's per-column slopes) have length cols or 1.
   */
  biasActivation(
    C: Float32Array,
    rows: number,
    cols: number,
    bias: Float32Array | null,
    activation: number,
    leakyAlpha: number,
    preluWeights: Float32Array | null,
  ): void;
  /**
   * 2-D convolution as im2col + GEMM: x and dx NHWC [batch, inH, inW, inC], filter and dw HWIO
   * [fH, fW, inC, outC], out and dy NHWC [batch, outH, outW, outC]; `geometry` is
   * [batch, inH, inW, inC, outH, outW, outC, fH, fW, strideH, strideW, dilationH, dilationW, padTop, padLeft].
   * Each overwrites its last Float32Array.
   */
  conv2d(x: Float32Array, filter: Float32Array, out: Float32Array, geometry: Int32Array): void;
  conv2dBackpropInput(dy: Float32Array, filter: Float32Array, dx: Float32Array, geometry: Int32Array): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, geometry: Int32Array): void;
  /**
   * Sparse per-sample convolution, accumulated into out: out[b] += Σ_i values[b, i] · (e_i ⊛ x[b]), e_i the
   * one-hot HWIO kernel at flat position index[i] (in [fH, fW, inC, outC]); x NHWC [batch, inH, inW, inC],
   * values [batch, index.length], out NHWC [batch, outH, outW, outC], `geometry` as for conv2d. An index
   * outside the kernel throws a RangeError.
   */
  sparsePerSampleConv2d(
    x: Float32Array,
    values: Float32Array,
    index: Int32Array,
    out: Float32Array,
    geometry: Int32Array,
  ): void;
  /**
   * Training-mode batch norm over the last axis of x (`channels` wide, every other axis a batch axis):
   * overwrites y (x's size), mean and rstd (channels each). See src/engine/kernels/batch_norm_train.ts.
   */
  batchNormTrain(
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    y: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    channels: number,
    epsilon: number,
    /** 0 (default) none, 1 ReLU, 2 ReLU6 after the normalisation. */
    activation?: number,
  ): void;
  /** Its gradient: overwrites dx, dgamma and dbeta; a fused activation needs beta to recompute its mask. */
  batchNormTrainGrad(
    dy: Float32Array,
    x: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    gamma: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    channels: number,
    beta?: Float32Array | null,
    activation?: number,
  ): void;
  /**
   * Whether narrow convolutions (outC a multiple of 4 up to 48) take the addon's direct AVX2 kernels instead of
   * im2col + GEMM; pass a boolean to switch (benchmarks). Off without AVX2 and FMA, or with
   * SORTEDNET_CONV_DIRECT=0.
   */
  convDirect(on?: boolean): boolean;
  /**
   * Whether sgemm of at most 8 rows of A (12 with AVX-512) against a transposed B, as in a decoding step through
   * weights stored [out, in], takes the addon's AVX2/AVX-512 kernel instead of OpenBLAS; pass a boolean to
   * switch (benchmarks), or 'avx2' for the AVX2 kernel where the CPU has AVX-512 too (tests). Off without AVX2
   * and FMA, or with SORTEDNET_SMALL_GEMM=0.
   */
  smallGemm(on?: boolean | 'avx2'): boolean;
  /**
   * Copies W [rows, cols] (row stride ldw) into P as panels of 32 rows, each transposed and 64-byte aligned, for
   * sgemmPacked; P needs packedLength(rows, cols) floats.
   */
  packWeight(W: Float32Array, rows: number, cols: number, ldw: number, P: Float32Array): void;
  /**
   * C[M, N] = alpha · A[M, K] · W[:N, :K]ᵀ + beta · C from P, W [rows, cols] packed by packWeight: each output is
   * one chain of fused multiply-adds in k order, so a row's result does not depend on M or on the other rows.
   * Throws where packedGemm() is false.
   */
  sgemmPacked(
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    lda: number,
    P: Float32Array,
    rows: number,
    cols: number,
    beta: number,
    C: Float32Array,
    ldc: number,
  ): void;
  /** Whether sgemmPacked runs here: AVX-512, with smallGemm on (and not forced to 'avx2'). */
  packedGemm(): boolean;
  /**
   * One decoding step of attention over a key/value cache, appending the new keys and values to it in place:
   * see src/engine/kernels/cached_attention.ts. dims = [B, h, kvh, n, d, C, past]; out [B, n, h, d].
   */
  attendCached(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    kCache: Float32Array,
    vCache: Float32Array,
    mask: Float32Array | null,
    out: Float32Array,
    dims: Int32Array,
  ): void;
  /**
   * RMS normalisation over rows of `features` (src/engine/kernels/rms_norm.ts, which it equals bit for bit):
   * overwrites y and rstd (one per row).
   */
  rmsNorm(
    x: Float32Array,
    gamma: Float32Array,
    y: Float32Array,
    rstd: Float32Array,
    features: number,
    epsilon: number,
  ): void;
  /**
   * Rotate-half rotary embedding of rows of x, row r at position r % positions (src/engine/kernels/rotary.ts,
   * which it equals bit for bit); cos and sin are [positions, d]. Overwrites y.
   */
  rotary(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    y: Float32Array,
    positions: number,
    inverse: boolean,
  ): void;
  /**
   * y = act(x · scale + shift) over rows of `channels` (src/engine/kernels/scale_shift.ts, which it equals bit
   * for bit): batch norm in evaluation, folded. activation 0 (default) none, 1 ReLU, 2 ReLU6.
   */
  scaleShift(
    x: Float32Array,
    scale: Float32Array,
    shift: Float32Array,
    y: Float32Array,
    channels: number,
    activation?: number,
  ): void;
  /** OpenBLAS's build description and thread count, e.g. "OpenBLAS 0.3.21 … Haswell …; 2 threads". */
  config(): string;
}

const ADDON = 'native/build/Release/sortednet_blas.node';
const NOT_BUILT = `${ADDON} is not built: apt-get install libopenblas-dev, then npm rebuild`;

let loaded: { blas: NativeBlas | null; reason: string | null } | null = null;

/** Every function this code calls on the addon (the compiler checks the list is complete). */
const FUNCTIONS: Record<keyof NativeBlas, true> = {
  sgemm: true,
  sgemmStridedBatched: true,
  biasActivation: true,
  conv2d: true,
  conv2dBackpropInput: true,
  conv2dBackpropFilter: true,
  sparsePerSampleConv2d: true,
  batchNormTrain: true,
  batchNormTrainGrad: true,
  convDirect: true,
  smallGemm: true,
  packWeight: true,
  sgemmPacked: true,
  packedGemm: true,
  attendCached: true,
  rmsNorm: true,
  rotary: true,
  scaleShift: true,
  config: true,
};

/**
 * Why a loaded addon cannot serve this code, or null: an addon built from an older native/blas.c
 * (the sources were updated without a rebuild) lacks functions, and would otherwise fail mid-run.
 */
export function addonMismatch(addon: object, path: string): string | null {
  const lacking = Object.keys(FUNCTIONS).filter(
    (f) => typeof (addon as Record<string, unknown>)[f] !== 'function',
  );
  if (lacking.length === 0) return null;
  return `${path} was built from older sources (it lacks ${lacking.join(', ')}); rebuild it with npm rebuild`;
}

/** The package root: this file runs as src/engine/native/blas.ts or dist/src/engine/native/blas.js. */
function addonCandidates(): string[] {
  return ['../../../', '../../../../'].map((up) => fileURLToPath(new URL(up + ADDON, import.meta.url)));
}

/** The addon, or null when it is not built or does not load (see `nativeBlasUnavailableReason`). */
export function loadNativeBlas(): NativeBlas | null {
  if (loaded) return loaded.blas;
  const path = addonCandidates().find((p) => existsSync(p));
  if (!path) {
    loaded = { blas: null, reason: NOT_BUILT };
    return null;
  }
  try {
    const blas = createRequire(import.meta.url)(path) as NativeBlas;
    const mismatch = addonMismatch(blas, path);
    if (mismatch) {
      loaded = { blas: null, reason: mismatch };
      return null;
    }
    blas.config(); // proves OpenBLAS resolved at load time
    loaded = { blas, reason: null };
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    loaded = { blas: null, reason: `${path} does not load (${message}); rebuild it with npm rebuild` };
  }
  return loaded.blas;
}

/** Why `loadNativeBlas()` returned null, or null when the addon is loaded. */
export function nativeBlasUnavailableReason(): string | null {
  loadNativeBlas();
  return loaded?.reason ?? null;
}
