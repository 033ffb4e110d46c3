import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { forwardConvInfo, nhwcPadding, wasmKernelRunner } from './conv_gradient_info.js';

export const kernelName = tf.Conv2DBackpropFilter;

/**
 * `Conv2DBackpropFilter` for the `wasm` backend (tfjs 4.22 has none, so no convnet can train there).
 *
 * The forward convolution (NHWC, dilation 1) is
 *   y[n, i, j, o] = sum_{p, q, c} xPad[n, i*sh + p, j*sw + q, c] * w[p, q, c, o],
 * so the filter gradient is
 *   dw[p, q, c, o] = sum_{n, i, j} xPad[n, p + i*sh, q + j*sw, c] * dy[n, i, j, o].
 * Read with the channel axis c as a batch, the batch axis n as the channels and dy as an
 * [oh, ow, N, Cout] filter dilated by the forward stride, that sum is itself a stride-1
 * convolution whose output is [Cin, kh, kw, Cout]:
 *   dw' = conv2d(transpose(x, [3, 1, 2, 0]), transpose(dy, [1, 2, 0, 3]), dilation = stride),
 * with the forward pad on top/left and just enough on bottom/right to give kh x kw outputs.
 * That runs the whole gradient in the backend's XNNPACK convolution (one GEMM with SIMD)
 * instead of a JavaScript loop; two transposes and, at most, one slice frame it. Measured on
 * batch 64 (32x32x32 -> 64, 3x3, stride 2): 57 ms, against 41 ms for the forward convolution.
 * The kernel's attributes carry no dilation: tfjs's `Conv2D` gradient refuses dilations > 1.
 */
function conv2DBackpropFilter(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x, dy } = args.inputs as tf.Conv2DBackpropFilterInputs;
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const { dataFormat, filterShape } = attrs;
  if (x === undefined || dy === undefined) throw new Error(`${kernelName} (wasm): needs inputs x and dy`);
  if (dataFormat !== 'NHWC') {
    throw new Error(`${kernelName} (wasm): dataFormat '${dataFormat}' is not supported; use 'NHWC'`);
  }
  const shapes = {
    x: x.shape as [number, number, number, number],
    filter: filterShape,
    dy: dy.shape,
    xName: 'x' as const,
  };
  const info = forwardConvInfo(kernelName, { ...attrs, dilations: 1 }, false, shapes);
  const { inHeight, inWidth, inChannels, outChannels, filterHeight, filterWidth } = info;
  const { outHeight, outWidth, strideHeight, strideWidth, padInfo } = info;

  const { run, dispose } = wasmKernelRunner(backend, kernelName);

  // Rows p + i*sh for i < oh reach kh + (oh - 1)*sh - 1; pad the bottom (right) up to there. A
  // 'valid' forward pass with stride may leave trailing rows unread (negative need): pad 0 and
  // slice the surplus outputs away below.
  const padBottom = Math.max(0, filterHeight + (outHeight - 1) * strideHeight - inHeight - padInfo.top);
  const padRight = Math.max(0, filterWidth + (outWidth - 1) * strideWidth - inWidth - padInfo.left);

  const xT = run(tf.Transpose, { x }, { perm: [3, 1, 2, 0] }); // [Cin, H, W, N]
  const dyT = run(tf.Transpose, { x: dy }, { perm: [1, 2, 0, 3] }); // [oh, ow, N, Cout]
  const conv = run(
    tf.Conv2D,
    { x: xT, filter: dyT },
    {
      strides: [1, 1],
      pad: nhwcPadding(padInfo.top, padBottom, padInfo.left, padRight),
      dilations: [strideHeight, strideWidth],
      dataFormat: 'NHWC',
    },
  ); // [Cin, >=kh, >=kw, Cout]
  dispose(xT);
  dispose(dyT);

  let cropped = conv;
  if (conv.shape[1] !== filterHeight || conv.shape[2] !== filterWidth) {
    cropped = run(
      tf.Slice,
      { x: conv },
      { begin: [0, 0, 0, 0], size: [inChannels, filterHeight, filterWidth, outChannels] },
    );
    dispose(conv);
  }
  const dw = run(tf.Transpose, { x: cropped }, { perm: [1, 2, 0, 3] }); // [kh, kw, Cin, Cout]
  dispose(cropped);
  return dw;
}

export const conv2DBackpropFilterWasmConfig: tf.KernelConfig = {
  kernelName,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter,
};
