import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export const kernelName = tf.UnsortedSegmentSum;

/**
 * `UnsortedSegmentSum` for the `wasm` backend (tfjs 4.22 has none). It is the gradient of
 * `gather` (`GatherV2_grad`): the rows an embedding lookup read get the output gradient added
 * back, once per read. With segmentIds of shape S (a prefix of x's shape) and rows of length
 * R = product of x's remaining dims,
 *   out[k, :] = sum_{t : segmentIds[t] = k} x[t, :],   out shape [numSegments, ...x.shape[rank(S):]].
 * Ids outside [0, numSegments) are dropped, as the `cpu` backend does. One pass of row adds over
 * the wasm heap: O(size of x), where the `cpu` kernel makes numSegments masked passes.
 */
function unsortedSegmentSum(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x, segmentIds } = args.inputs as tf.UnsortedSegmentSumInputs;
  const { numSegments } = args.attrs as unknown as tf.UnsortedSegmentSumAttrs;
  if (x === undefined || segmentIds === undefined) {
    throw new Error(`${kernelName} (wasm): needs inputs x and segmentIds`);
  }
  const idsRank = segmentIds.shape.length;
  if (segmentIds.shape.join() !== x.shape.slice(0, idsRank).join()) {
    throw new Error(
      `${kernelName} (wasm): segmentIds shape [${segmentIds.shape}] must be a prefix of x shape [${x.shape}]`,
    );
  }
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`${kernelName} (wasm): numSegments must be a non-negative integer, got ${numSegments}`);
  }
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`${kernelName} (wasm): x dtype '${x.dtype}' is not supported; use float32 or int32`);
  }
  const rowShape = x.shape.slice(idsRank);
  const rowLength = tf.util.sizeFromShape(rowShape);

  const out = backend.makeOutput([numSegments, ...rowShape], x.dtype);
  // Views after the allocation: makeOutput may grow the heap and detach older views.
  const sums = backend.typedArrayFromHeap(out);
  sums.fill(0);
  const xs = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  for (let t = 0; t < ids.length; ++t) {
    const k = ids[t];
    if (k < 0 || k >= numSegments) continue;
    const from = t * rowLength;
    const to = k * rowLength;
    for (let e = 0; e < rowLength; ++e) sums[to + e] += xs[from + e];
  }
  return out;
}

export const unsortedSegmentSumWasmConfig: tf.KernelConfig = {
  kernelName,
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSum,
};
