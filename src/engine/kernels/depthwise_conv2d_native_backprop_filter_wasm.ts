import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { forwardConvInfo } from './conv_gradient_info.js';

export const kernelName = tf.DepthwiseConv2dNativeBackpropFilter;

/**
 * `DepthwiseConv2dNativeBackpropFilter` for the `wasm` backend (tfjs 4.22 has none).
 *
 * The depthwise forward pass (NHWC, channel multiplier M) is
 *   y[b, i, j, c*M + m] = sum_{p, q} xPad[b, i*sh + p*dh, j*sw + q*dw, c] * w[p, q, c, m],
 * so the filter gradient is
 *   dw[p, q, c, m] = sum_{b, i, j} xPad[b, i*sh + p*dh, j*sw + q*dw, c] * dy[b, i, j, c*M + m].
 * Each output channel sees one input channel, so the work is only kh*kw*B*oh*ow*C*M
 * multiply-adds: a direct loop over the wasm heap (innermost over contiguous channels) is cheap,
 * whereas recasting it as a full convolution (as `Conv2DBackpropFilter` does) would multiply the
 * work by C. Accumulates in float64 over the batch and the output positions.
 */
function depthwiseConv2dNativeBackpropFilter(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x, dy } = args.inputs as tf.DepthwiseConv2dNativeBackpropFilterInputs;
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const { filterShape } = attrs;
  if (x === undefined || dy === undefined) throw new Error(`${kernelName} (wasm): needs inputs x and dy`);
  const shapes = {
    x: x.shape as [number, number, number, number],
    filter: filterShape,
    dy: dy.shape,
    xName: 'x' as const,
  };
  const info = forwardConvInfo(kernelName, attrs, true, shapes);
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`${kernelName} (wasm): needs float32 x and dy, got ${x.dtype} and ${dy.dtype}`);
  }
  const multiplier = outChannels / inChannels;
  const top = info.padInfo.top;
  const left = info.padInfo.left;

  const out = backend.makeOutput([...filterShape], 'float32');
  // Views after the allocation: makeOutput may grow the heap and detach older views.
  const xs = backend.typedArrayFromHeap(x) as Float32Array;
  const dys = backend.typedArrayFromHeap(dy) as Float32Array;
  const acc = new Float64Array(filterHeight * filterWidth * outChannels);

  for (let b = 0; b < batchSize; ++b) {
    for (let i = 0; i < outHeight; ++i) {
      for (let j = 0; j < outWidth; ++j) {
        const dyOffset = ((b * outHeight + i) * outWidth + j) * outChannels;
        for (let p = 0; p < filterHeight; ++p) {
          const r = i * strideHeight + p * dilationHeight - top;
          if (r < 0 || r >= inHeight) continue;
          for (let q = 0; q < filterWidth; ++q) {
            const s = j * strideWidth + q * dilationWidth - left;
            if (s < 0 || s >= inWidth) continue;
            const xOffset = ((b * inHeight + r) * inWidth + s) * inChannels;
            const wOffset = (p * filterWidth + q) * outChannels;
            if (multiplier === 1) multiplyAdd(acc, wOffset, xs, xOffset, dys, dyOffset, inChannels);
            else broadcastMultiplyAdd(acc, wOffset, xs, xOffset, dys, dyOffset, inChannels, multiplier);
          }
        }
      }
    }
  }
  backend.typedArrayFromHeap(out).set(acc);
  return out;
}

// The channel loops live in small functions of their own: V8 optimises the nest about twice as
// well as with both variants inline.

/** acc[o + c] += a[ao + c] * b[bo + c] for c < n (multiplier 1). */
function multiplyAdd(
  acc: Float64Array,
  o: number,
  a: Float32Array,
  ao: number,
  b: Float32Array,
  bo: number,
  n: number,
) {
  for (let c = 0; c < n; ++c) acc[o + c] += a[ao + c] * b[bo + c];
}

/** acc[o + c*M + m] += a[ao + c] * b[bo + c*M + m] for c < n, m < M (multiplier M). */
function broadcastMultiplyAdd(
  acc: Float64Array,
  o: number,
  a: Float32Array,
  ao: number,
  b: Float32Array,
  bo: number,
  n: number,
  multiplier: number,
) {
  for (let c = 0, e = 0; c < n; ++c) {
    const value = a[ao + c];
    for (let m = 0; m < multiplier; ++m, ++e) acc[o + e] += value * b[bo + e];
  }
}

export const depthwiseConv2dNativeBackpropFilterWasmConfig: tf.KernelConfig = {
  kernelName,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropFilter,
};
