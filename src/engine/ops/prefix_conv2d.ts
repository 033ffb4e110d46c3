import * as tf from '@tensorflow/tfjs-core';
import {
  PrefixConv2D,
  PrefixConv2DGradFilter,
  PrefixConv2DGradInput,
  dnnlLimits,
  type PrefixConv2DAttrs,
} from '../kernels/prefix_conv2d.js';

/**
 * y = conv2d(x, W[:, :, :in, :out]) with x [B, H, W, in] (NHWC) and W [fH, fW, IN, OUT] (HWIO, in ≤ IN,
 * out ≤ OUT): a sub-network's convolution on a prefix of the full weight. Where the backend has the
 * project's kernels (the oneDNN addon), the convolution reads the prefix in place through strided memory
 * descriptors and the filter gradient is written into the corner of a full-size zero tensor, so neither the
 * slice nor its gradient's padding is copied. Elsewhere: slice, then conv2d.
 *
 * ```ts
 * const y = prefixConv2d(x, weight, 32, 1, 'same'); // x [8, 16, 16, 24], weight [3, 3, 64, 64] → [8, 16, 16, 32]
 * ```
 */
export function prefixConv2d(
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  out: number,
  stride: number,
  pad: 'same' | 'valid',
  where = 'conv',
): tf.Tensor4D {
  const cin = x.shape[3];
  if (w.rank !== 4 || x.rank !== 4 || out < 1 || out > w.shape[3] || cin > w.shape[2]) {
    throw new Error(
      `${where}: conv2d(x [${x.shape}], W[:, :, :${cin}, :${out}]) does not fit a weight of shape [${w.shape}]`,
    );
  }
  const attrs: PrefixConv2DAttrs = { strides: [stride, stride], pad };
  const [fH, fW] = w.shape;
  const outSize = (n: number, f: number) =>
    pad === 'same' ? Math.ceil(n / stride) : Math.max(0, Math.floor((n - f) / stride) + 1);
  const macs = x.shape[0] * outSize(x.shape[1], fH) * outSize(x.shape[2], fW) * fH * fW * cin * out;
  // Small convolutions (batch-1 inference) are quicker sliced, on the kernels underneath.
  const big = macs >= dnnlLimits.minMacs;
  if (x.dtype === 'float32' && big && tf.getKernel(PrefixConv2D, tf.getBackend()))
    return tf.engine().runKernel(PrefixConv2D, { x, w }, { ...attrs, out }) as tf.Tensor4D;
  const full = cin === w.shape[2] && out === w.shape[3];
  const box = full ? w : tf.slice(w, [0, 0, 0, 0], [-1, -1, cin, out]);
  return tf.conv2d(x, box, stride, pad);
}

tf.registerGradient({
  kernelName: PrefixConv2D,
  inputsToSave: ['x', 'w'],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const [x, w] = saved;
    const d = Array.isArray(dy) ? dy[0] : dy;
    const { strides, pad } = attrs as unknown as PrefixConv2DAttrs;
    const common = { strides, pad };
    return {
      // dx = conv2dᵀ(dy, W[:, :, :in, :out]); dW = [∂W_box, 0], the full weight's shape
      x: () =>
        tf
          .engine()
          .runKernel(PrefixConv2DGradInput, { dy: d, w }, { ...common, inputShape: x.shape }) as tf.Tensor,
      w: () =>
        tf
          .engine()
          .runKernel(PrefixConv2DGradFilter, { x, dy: d }, { ...common, filterShape: w.shape }) as tf.Tensor,
    };
  },
});
