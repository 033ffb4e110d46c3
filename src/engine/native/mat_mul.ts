/**
 * BatchMatMul for the wasm backend through OpenBLAS: the wasm tensors' heap memory is handed to
 * `cblas_sgemm` as it is (no copies). Products too small to pay for the call, non-float32 tensors and batch
 * shapes that are not a plain stride pattern go to the stock XNNPACK kernel.
 */
import {
  broadcast_util,
  util,
  type BatchMatMulAttrs,
  type KernelFunc,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { NativeBlas } from './blas.js';

/**
 * Below this many multiply-adds (M·N·K over the batch) both paths take a few microseconds of call overhead
 * and the stock kernel is kept. Measured on 2 cores (Node 20, tfjs 4.22): OpenBLAS is ahead from 16³ up
 * (1.3× at 16³, 2.1× at 64³, 2.4× at 128³) and far ahead wherever the stock kernel leaves XNNPACK:
 * transposed or batched operands, 10–50× (b8 128×64×128 with transposeB: 7.7 ms stock, 0.24 ms native).
 */
export const MIN_NATIVE_MACS = 16 * 16 * 16;

/** A product as one strided batch of row-major GEMMs, out[i] = op(a[i·strideA]) · op(b[i·strideB]). */
export interface MatMulPlan {
  batch: number;
  M: number;
  N: number;
  K: number;
  strideA: number; // 0 broadcasts a single matrix
  strideB: number;
  outShape: number[]; // [...broadcast batch dims, M, N]
}

/**
 * The plan for matMul(a, b, transposeA, transposeB), or null where the native path does not apply: inner
 * sizes disagree (the stock kernel throws its usual error) or the batch broadcast is not "equal or one".
 */
export function planMatMul(
  aShape: readonly number[],
  bShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): MatMulPlan | null {
  const aRank = aShape.length;
  const bRank = bShape.length;
  if (aRank < 2 || bRank < 2) return null;
  const [aRows, aCols] = [aShape[aRank - 2], aShape[aRank - 1]];
  const [bRows, bCols] = [bShape[bRank - 2], bShape[bRank - 1]];
  const M = transposeA ? aCols : aRows;
  const K = transposeA ? aRows : aCols;
  const N = transposeB ? bRows : bCols;
  if (K !== (transposeB ? bCols : bRows)) return null;
  const batchShape = broadcast_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
  const batch = util.sizeFromShape(batchShape);
  const batchA = util.sizeFromShape(aShape.slice(0, -2));
  const batchB = util.sizeFromShape(bShape.slice(0, -2));
  // Equal batch sizes under a valid broadcast differ only by leading 1s, so flat indices coincide.
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) return null;
  return {
    batch,
    M,
    N,
    K,
    strideA: batchA === 1 ? 0 : M * K,
    strideB: batchB === 1 ? 0 : K * N,
    outShape: [...batchShape, M, N],
  };
}

/** Runs a plan on wasm tensors; the caller has checked both are float32. */
export function runMatMul(
  blas: NativeBlas,
  backend: BackendWasm,
  a: TensorInfo,
  b: TensorInfo,
  plan: MatMulPlan,
  transposeA: boolean,
  transposeB: boolean,
): TensorInfo {
  const { batch, M, N, K } = plan;
  const out = backend.makeOutput(plan.outShape, 'float32');
  // Heap views only after the allocation: makeOutput may grow the wasm memory, which detaches older views.
  const aHeap = backend.typedArrayFromHeap(a) as Float32Array;
  const bHeap = backend.typedArrayFromHeap(b) as Float32Array;
  const outHeap = backend.typedArrayFromHeap(out) as Float32Array;
  const lda = transposeA ? M : K;
  const ldb = transposeB ? K : N;
  blas.sgemmStridedBatched(
    transposeA,
    transposeB,
    M,
    N,
    K,
    1,
    aHeap,
    lda,
    plan.strideA,
    bHeap,
    ldb,
    plan.strideB,
    0,
    outHeap,
    N,
    M * N,
    batch,
  );
  return out;
}

/** Whether the native path can compute this product (float32, a stride pattern, nothing empty). */
export function nativeCan(a: TensorInfo, b: TensorInfo, plan: MatMulPlan | null): plan is MatMulPlan {
  return (
    plan !== null &&
    a.dtype === 'float32' &&
    b.dtype === 'float32' &&
    plan.batch * plan.M * plan.N * plan.K > 0
  );
}

/** Whether it can, and the product is large enough to pay for the call. */
export function worthNative(a: TensorInfo, b: TensorInfo, plan: MatMulPlan | null): plan is MatMulPlan {
  return nativeCan(a, b, plan) && plan.batch * plan.M * plan.N * plan.K >= MIN_NATIVE_MACS;
}

/** The wasm backend's BatchMatMul with large float32 products on OpenBLAS; everything else on `stock`. */
export function nativeBatchMatMul(blas: NativeBlas, stock: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as unknown as BatchMatMulAttrs;
    const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
    if (!worthNative(a, b, plan)) return stock(args);
    return runMatMul(blas, args.backend as BackendWasm, a, b, plan, transposeA, transposeB);
  };
}
