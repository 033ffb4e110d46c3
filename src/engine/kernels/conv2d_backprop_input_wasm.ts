import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { forwardConvInfo, nhwcPadding, wasmKernelRunner } from './conv_gradient_info.js';
import { replaceWasmKernel, stockWasmKernel } from './replace_wasm.js';

export const kernelName = tf.Conv2DBackpropInput;

/** The kernel tfjs-backend-wasm ships, kept for the cases the fast path does not take. */

/**
 * `Conv2DBackpropInput` for the `wasm` backend, replacing the stock one: that is a direct loop at
 * 3-4 GFLOP/s, about ten times slower than the backend's XNNPACK forward convolution, so it
 * dominated every convnet training step (batch 64, 16x16x64 -> 64, 3x3: 360 ms against 33 ms).
 *
 * The forward convolution (NHWC, dilation 1) is
 *   y[n, i, j, o] = sum_{p, q, c} x[n, i*sh + p - top, j*sw + q - left, c] * w[p, q, c, o],
 * so the input gradient is
 *   dx[n, r, t, c] = sum_{i*sh + p - top = r, j*sw + q - left = t} dy[n, i, j, o] * w[p, q, c, o].
 * With dy dilated by the stride (dyD[n, i*sh, j*sw, o] = dy[n, i, j, o], zeros between) and the
 * filter flipped with its channel axes swapped (wF[p, q, o, c] = w[kh-1-p, kw-1-q, c, o]), that is
 * the stride-1 convolution
 *   dx = conv2d(dyD, wF), padded by kh-1-top on top and kw-1-left on the left,
 * with bottom and right padding chosen to give inHeight x inWidth outputs. It runs in the backend's
 * XNNPACK convolution; a flip of the filter and, for stride > 1, one pad frame it. With stride s
 * the dilated convolution multiplies s*s times as many zeros as products that count, yet at
 * stride 2 it is still faster than the stock loop (bench/conv_grad.ts).
 * NCHW and non-float32 tensors go to the stock kernel.
 */
function conv2DBackpropInput(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo | tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const { dy, filter } = args.inputs as tf.Conv2DBackpropInputInputs;
  const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const { dataFormat, inputShape } = attrs;
  if (dy === undefined || filter === undefined) {
    throw new Error(`${kernelName} (wasm): needs inputs dy and filter`);
  }
  if (dataFormat !== 'NHWC' || dy.dtype !== 'float32' || filter.dtype !== 'float32') {
    const stockConfig = stockWasmKernel(kernelName);
    if (stockConfig === undefined) {
      throw new Error(
        `${kernelName} (wasm): only NHWC float32 is handled here (got ${dataFormat}, ${dy.dtype}, ` +
          `${filter.dtype}) and the stock kernel is missing`,
      );
    }
    return stockConfig.kernelFunc(args);
  }
  const shapes = {
    x: inputShape,
    filter: filter.shape as [number, number, number, number],
    dy: dy.shape,
    xName: 'input' as const,
  };
  const info = forwardConvInfo(kernelName, { ...attrs, dilations: 1 }, false, shapes);
  const { batchSize, inHeight, inWidth, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth, padInfo } = info;

  const { run, dispose } = wasmKernelRunner(backend, kernelName);

  const wF = flipFilter(backend, filter); // [kh, kw, Cout, Cin]

  // Dilate: [B, oh, 1, ow, 1, C] padded to [B, oh, sh, ow, sw, C] is [B, oh*sh, ow*sw, C] with
  // dy at rows i*sh, columns j*sw; the trailing sh-1 rows (sw-1 columns) of zeros are harmless.
  let dyD = dy;
  if (strideHeight > 1 || strideWidth > 1) {
    const dy6 = run(tf.Reshape, { x: dy }, { shape: [batchSize, outHeight, 1, outWidth, 1, outChannels] });
    const padded = run(
      tf.PadV2,
      { x: dy6 },
      {
        paddings: [
          [0, 0],
          [0, 0],
          [0, strideHeight - 1],
          [0, 0],
          [0, strideWidth - 1],
          [0, 0],
        ],
        constantValue: 0,
      },
    );
    dispose(dy6);
    dyD = run(
      tf.Reshape,
      { x: padded },
      { shape: [batchSize, outHeight * strideHeight, outWidth * strideWidth, outChannels] },
    );
    dispose(padded);
  }

  // Padding of dyD for a stride-1 convolution with inHeight x inWidth outputs. A forward pad
  // larger than the kernel, or trailing zero rows of the dilation, can make a side negative:
  // those rows of dyD reach no dx, so they are cut off instead.
  const [height, width] = [dyD.shape[1]!, dyD.shape[2]!];
  const top = filterHeight - 1 - padInfo.top;
  const left = filterWidth - 1 - padInfo.left;
  const bottom = inHeight + filterHeight - 1 - height - top;
  const right = inWidth + filterWidth - 1 - width - left;
  let dyCut = dyD;
  if (top < 0 || left < 0 || bottom < 0 || right < 0) {
    const [rowBegin, columnBegin] = [Math.max(0, -top), Math.max(0, -left)];
    dyCut = run(
      tf.Slice,
      { x: dyD },
      {
        begin: [0, rowBegin, columnBegin, 0],
        size: [
          batchSize,
          height - rowBegin + Math.min(0, bottom),
          width - columnBegin + Math.min(0, right),
          outChannels,
        ],
      },
    );
  }
  if (dyD !== dy && dyCut !== dyD) dispose(dyD);

  const dx = run(
    tf.Conv2D,
    { x: dyCut, filter: wF },
    {
      strides: [1, 1],
      pad: nhwcPadding(Math.max(0, top), Math.max(0, bottom), Math.max(0, left), Math.max(0, right)),
      dilations: [1, 1],
      dataFormat: 'NHWC',
    },
  ); // [B, inHeight, inWidth, Cin]
  if (dyCut !== dy) dispose(dyCut);
  dispose(wF);
  return dx;
}

/**
 * wF[p, q, o, c] = w[kh-1-p, kw-1-q, c, o]: the filter flipped in both spatial axes, its channel
 * axes swapped. In a row-major [kh, kw, Cin, Cout] filter the spatial flip reverses the order of
 * the kh*kw taps, so one pass transposes each tap's [Cin, Cout] block into the mirrored slot.
 * (The wasm `Reverse` kernel indexes element by element: 26 ms for a 3x3x256x256 filter, and its
 * `Transpose` another 2 ms, against 1 ms for this loop.)
 */
function flipFilter(backend: BackendWasm, filter: tf.TensorInfo): tf.TensorInfo {
  const [filterHeight, filterWidth, inChannels, outChannels] = filter.shape; // [kh, kw, Cin, Cout]
  const taps = filterHeight * filterWidth;
  const block = inChannels * outChannels;
  const out = backend.makeOutput([filterHeight, filterWidth, outChannels, inChannels], 'float32');
  // Views after the allocation: makeOutput may grow the heap and detach older views.
  const flipped = backend.typedArrayFromHeap(out) as Float32Array;
  const w = backend.typedArrayFromHeap(filter) as Float32Array;
  for (let t = 0; t < taps; ++t) {
    const [from, to] = [(taps - 1 - t) * block, t * block];
    for (let c = 0; c < inChannels; ++c) {
      for (let o = 0; o < outChannels; ++o) flipped[to + o * inChannels + c] = w[from + c * outChannels + o];
    }
  }
  return out;
}

/**
 * Replaces the stock wasm `Conv2DBackpropInput` with the one above, which falls back to the stock
 * one for what it does not handle. Calling it again changes nothing.
 */
export function replaceConv2DBackpropInputWasm(): void {
  replaceWasmKernel(kernelName, conv2DBackpropInput);
}

/** The stock wasm kernel this one replaced (for benchmarks and tests); undefined before the replacement. */
export function stockConv2DBackpropInputWasm(): tf.KernelConfig | undefined {
  return stockWasmKernel(kernelName);
}
