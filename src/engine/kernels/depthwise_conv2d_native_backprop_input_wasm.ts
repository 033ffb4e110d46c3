import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { forwardConvInfo } from './conv_gradient_info.js';

export const kernelName = tf.DepthwiseConv2dNativeBackpropInput;

/**
 * `DepthwiseConv2dNativeBackpropInput` for the `wasm` backend (tfjs 4.22 has none).
 *
 * The depthwise forward pass (NHWC, channel multiplier M) is
 *   y[b, i, j, c*M + m] = sum_{p, q} xPad[b, i*sh + p*dh, j*sw + q*dw, c] * w[p, q, c, m],
 * so each output position scatters its gradient back to the inputs it read:
 *   dx[b, i*sh + p*dh - top, j*sw + q*dw - left, c] += sum_m dy[b, i, j, c*M + m] * w[p, q, c, m].
 * The scatter form needs no division by the stride (the gather form does) and its innermost
 * loop runs over contiguous channels; the work, kh*kw*B*oh*ow*C*M multiply-adds, is small
 * enough for a direct loop over the wasm heap.
 */
function depthwiseConv2dNativeBackpropInput(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { dy, filter } = args.inputs as tf.DepthwiseConv2dNativeBackpropInputInputs;
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const { inputShape } = attrs;
  if (dy === undefined || filter === undefined) {
    throw new Error(`${kernelName} (wasm): needs inputs dy and filter`);
  }
  const shapes = {
    x: inputShape,
    filter: filter.shape as [number, number, number, number],
    dy: dy.shape,
    xName: 'input' as const,
  };
  const info = forwardConvInfo(kernelName, attrs, true, shapes);
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  if (dy.dtype !== 'float32' || filter.dtype !== 'float32') {
    throw new Error(`${kernelName} (wasm): needs float32 dy and filter, got ${dy.dtype} and ${filter.dtype}`);
  }
  const multiplier = outChannels / inChannels;
  const top = info.padInfo.top;
  const left = info.padInfo.left;

  const out = backend.makeOutput([...inputShape], 'float32');
  // Views after the allocation: makeOutput may grow the heap and detach older views.
  const dx = backend.typedArrayFromHeap(out) as Float32Array;
  dx.fill(0);
  const dys = backend.typedArrayFromHeap(dy) as Float32Array;
  const ws = backend.typedArrayFromHeap(filter) as Float32Array;

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
            if (multiplier === 1) multiplyAdd(dx, xOffset, dys, dyOffset, ws, wOffset, inChannels);
            else groupDotAdd(dx, xOffset, dys, dyOffset, ws, wOffset, inChannels, multiplier);
          }
        }
      }
    }
  }
  return out;
}

// The channel loops live in small functions of their own: V8 optimises the nest about twice as
// well as with both variants inline (a standalone loop for B 64, 32x32x64, 3x3: 75 ms against 150 ms).

/** out[o + c] += a[ao + c] * b[bo + c] for c < n (multiplier 1). */
function multiplyAdd(
  out: Float32Array,
  o: number,
  a: Float32Array,
  ao: number,
  b: Float32Array,
  bo: number,
  n: number,
) {
  for (let c = 0; c < n; ++c) out[o + c] += a[ao + c] * b[bo + c];
}

/** out[o + c] += sum_m a[ao + c*M + m] * b[bo + c*M + m] for c < n (multiplier M). */
function groupDotAdd(
  out: Float32Array,
  o: number,
  a: Float32Array,
  ao: number,
  b: Float32Array,
  bo: number,
  n: number,
  multiplier: number,
) {
  for (let c = 0, e = 0; c < n; ++c) {
    let sum = 0;
    for (let m = 0; m < multiplier; ++m, ++e) sum += a[ao + e] * b[bo + e];
    out[o + c] += sum;
  }
}

export const depthwiseConv2dNativeBackpropInputWasmConfig: tf.KernelConfig = {
  kernelName,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropInput,
};
