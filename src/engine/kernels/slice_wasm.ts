import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { replaceWasmKernel, stockWasmKernel } from './replace_wasm.js';
import { recordSlice } from './slice_origin.js';

export const kernelName = tf.Slice;

/**
 * `Slice` for the `wasm` backend as copies of contiguous runs. A sub-network's weights are prefixes of the
 * full ones, so slicing is on every forward pass: a row prefix of a row-major matrix is one run, a [256, 256]
 * corner of [1024, 1024] is 256 runs. The stock kernel took ~10 ms for a [256, 784] prefix of [1024, 784]
 * (about 50 ns per element; bench/width_latency.ts), more than the matmul that follows it.
 */
function slice(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x } = args.inputs as tf.SliceInputs;
  if (x === undefined) throw new Error(`${kernelName} (wasm): needs an input x`);
  const { begin, size } = args.attrs as unknown as tf.SliceAttrs;
  const backend = args.backend as BackendWasm;
  const [start, extent] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
  tf.slice_util.assertParamsValid(x as tf.Tensor, start, extent);
  const out = backend.makeOutput(extent, x.dtype);
  if (tf.util.sizeFromShape(extent) === 0) return out;
  recordSlice(out.dataId, x.dataId, start, extent);
  // Views after the allocation: makeOutput may grow the heap and detach older views.
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  const rank = x.shape.length;
  const strides = tf.util.computeStrides(x.shape); // rank - 1 entries; the last axis has stride 1
  const stride = (d: number) => (d === rank - 1 ? 1 : strides[d]);
  // Trailing axes taken whole merge into one run with the innermost axis that is cut (or the first).
  let k = rank - 1;
  while (k > 0 && extent[k] === x.shape[k]) k--;
  const run = extent[k] * stride(k);
  let offset = 0;
  for (let d = 0; d <= k; d++) offset += start[d] * stride(d);
  const runs = tf.util.sizeFromShape(extent.slice(0, k));
  const index = new Array<number>(k).fill(0);
  for (let r = 0, o = 0; r < runs; r++, o += run) {
    dst.set(src.subarray(offset, offset + run), o);
    // Next run: advance the outer axes like an odometer, adjusting the source offset as we go.
    for (let d = k - 1; d >= 0; d--) {
      offset += stride(d);
      if (++index[d] < extent[d]) break;
      offset -= extent[d] * stride(d);
      index[d] = 0;
    }
  }
  return out;
}

/** Replaces the stock wasm `Slice` (string tensors, which wasm does not hold, never reach it). Once only. */
export function replaceSliceWasm(): void {
  replaceWasmKernel(kernelName, slice);
}

/** The stock wasm kernel this one replaced (for benchmarks); undefined before the replacement. */
export function stockSliceWasm(): tf.KernelConfig | undefined {
  return stockWasmKernel(kernelName);
}
