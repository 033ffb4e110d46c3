import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { replaceWasmKernel, stockWasmKernel } from './replace_wasm.js';
import { sliceOrigin } from './slice_origin.js';

export const kernelName = tf.BatchMatMul;

/**
 * `BatchMatMul` for the `wasm` backend with transposed operands made explicit. The stock kernel sends only
 * untransposed products to XNNPACK; with transposeA or transposeB it falls back to scalar loops, 12–50×
 * slower (1024³: 63 ms plain, 786 ms with transposeB, 3058 ms with transposeA). Every Linear layer
 * multiplies by Wᵀ and its weight gradient by xᵀ, so the portable path (browsers, Node without the native
 * addon) paid that on every step. Here a transposed operand is copied transposed (blocked, so both sides
 * stay in cache) and the product goes to the stock kernel untransposed.
 */
const BLOCK = 32;

/** A copy of t with its last two axes swapped, on the wasm heap; the caller disposes it. */
function transposeLastTwo(backend: BackendWasm, t: tf.TensorInfo): tf.TensorInfo {
  const rank = t.shape.length;
  const [rows, cols] = [t.shape[rank - 2], t.shape[rank - 1]];
  const out = backend.makeOutput([...t.shape.slice(0, -2), cols, rows], t.dtype);
  // Views after the allocation: makeOutput may grow the heap and detach older views.
  const src = backend.typedArrayFromHeap(t);
  const dst = backend.typedArrayFromHeap(out);
  const size = rows * cols;
  // Blocked, with the writes contiguous in the inner loop: strided writes a power-of-two apart alias in
  // the cache and ran 4× slower.
  for (let m = 0; m < src.length; m += size) {
    for (let j0 = 0; j0 < cols; j0 += BLOCK) {
      const j1 = Math.min(j0 + BLOCK, cols);
      for (let i0 = 0; i0 < rows; i0 += BLOCK) {
        const i1 = Math.min(i0 + BLOCK, rows);
        for (let j = j0; j < j1; j++) {
          const to = m + j * rows;
          for (let i = i0; i < i1; i++) dst[to + i] = src[m + i * cols + j];
        }
      }
    }
  }
  return out;
}

/**
 * Transposed copies of operands that come back: a weight, multiplied step after step of decoding (or a
 * sub-model's prefix of it, a fresh slice every step but the same region of the same data, src/engine/kernels/
 * slice_origin.ts). An operand is copied afresh the first time it is seen transposed and kept from the second
 * (an activation is multiplied once; a weight every step), until the data it was taken from is freed. Besides
 * the copy, this spares the stock kernel's XNNPACK operator, which packs its right-hand matrix once per matrix
 * it has not seen: a fresh copy every step was packed every step. A copy holds exactly the operand's values,
 * transposed, so results do not depend on whether it was kept.
 */
/** Per source data: the operands (region and shape) seen once. */
const seen = new WeakMap<object, Set<string>>();
/** Per source data: the kept copies, by region and shape. */
const kept = new Map<object, Map<string, tf.TensorInfo>>();
const freeing = new WeakSet<BackendWasm>();

/** Frees the kept copies of a source with it: the backend's disposeData, wrapped once per backend. */
function freeCopiesWithSources(backend: BackendWasm): void {
  if (freeing.has(backend)) return;
  freeing.add(backend);
  const dispose = backend.disposeData.bind(backend);
  backend.disposeData = (dataId: object, force?: boolean): boolean => {
    const freed = dispose(dataId, force);
    const copies = freed ? kept.get(dataId) : undefined;
    if (copies) {
      kept.delete(dataId);
      for (const copy of copies.values()) dispose(copy.dataId, true);
    }
    return freed;
  };
}

/** Transposed operands kept now (tests). */
export function keptTransposes(): number {
  let n = 0;
  for (const copies of kept.values()) n += copies.size;
  return n;
}

let keeping = true;
/** Whether operands transposed again are kept (on by default); pass a boolean to switch (benchmarks). */
export function keepTransposedOperands(on?: boolean): boolean {
  if (on !== undefined) keeping = on;
  return keeping;
}

function batchMatMul(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo | tf.TensorInfo[] {
  const { a, b } = args.inputs as tf.BatchMatMulInputs;
  const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
  const run = stockWasmKernel(kernelName)!.kernelFunc;
  if ((!transposeA && !transposeB) || a === undefined || b === undefined) return run(args);
  const backend = args.backend as BackendWasm;
  freeCopiesWithSources(backend);
  const temps: tf.TensorInfo[] = [];
  const plain = (t: tf.TensorInfo, transposed: boolean) => {
    if (!transposed) return t;
    const origin = sliceOrigin(t.dataId);
    const source = origin?.source ?? t.dataId;
    // A reshape shares its source's data: the shape is part of the key.
    const key = `${origin?.region ?? ''}|${t.shape.join(',')}`;
    const hit = keeping ? kept.get(source)?.get(key) : undefined;
    if (hit) return hit;
    const copy = transposeLastTwo(backend, t);
    const before = seen.get(source);
    if (keeping && before?.has(key)) {
      const copies = kept.get(source) ?? new Map<string, tf.TensorInfo>();
      kept.set(source, copies.set(key, copy));
    } else {
      temps.push(copy);
      if (before) before.add(key);
      else seen.set(source, new Set([key]));
    }
    return copy;
  };
  try {
    return run({
      ...args,
      inputs: { a: plain(a, transposeA), b: plain(b, transposeB) },
      attrs: { ...args.attrs, transposeA: false, transposeB: false },
    });
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}

/** Replaces the stock wasm `BatchMatMul`, keeping it underneath for the untransposed product. Once only. */
export function replaceBatchMatMulWasm(): void {
  replaceWasmKernel(kernelName, batchMatMul);
}

/** The stock wasm kernel this one wraps (for benchmarks); undefined before the replacement. */
export function stockBatchMatMulWasm(): tf.KernelConfig | undefined {
  return stockWasmKernel(kernelName);
}
