/**
 * Convolution with a different kernel per sample (DY-Conv's, and the portable path of compact PAD
 * layers), through im2col and one batched matMul: no per-sample loop.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface ConvGeometry {
  readonly kernel: number;
  readonly stride: number;
  readonly padding: 'same' | 'valid';
}

/** [H', W'] of a kernel×kernel convolution of x [B, H, W, C], as tf.conv2d computes them. */
export function outputSize(shape: readonly number[], kernel: number, g: ConvGeometry): [number, number] {
  const info = tf.backend_util.computeConv2DInfo(
    shape as [number, number, number, number],
    [kernel, kernel, shape[3], 1],
    g.stride,
    1,
    g.padding,
  );
  return [info.outHeight, info.outWidth];
}

/**
 * Patches of x for a kernel×kernel convolution: [B, H, W, C] → [B, H'·W', C·kernel·kernel], each
 * patch vector ordered (channel, row, column). tfjs-core has no extractPatches; a depthwise
 * convolution with one-hot filters (output channel c·k² + i·k + j copies x[.., c] at offset (i, j))
 * extracts them, with tf.conv2d's exact stride and 'same'/'valid' padding, and its gradient is a
 * single depthwise backprop — five times faster on WASM than k² slices + concat, whose backward
 * pass pads every slice back to full size.
 */
export function im2col(x: tf.Tensor4D, g: ConvGeometry): tf.Tensor3D {
  const [B, , , C] = x.shape;
  const { kernel: k, stride, padding } = g;
  const [ho, wo] = outputSize(x.shape, k, g);
  if (ho < 1 || wo < 1)
    throw new Error(
      `im2col: a ${k}×${k} kernel does not fit a ${x.shape[1]}×${x.shape[2]} input with '${padding}'`,
    );
  const oneHot = tf.tile(tf.reshape(tf.eye(k * k), [k, k, 1, k * k]), [1, 1, C, 1]) as tf.Tensor4D; // [k, k, C, k²]
  const patches = tf.depthwiseConv2d(x, oneHot, stride, padding); // [B, ho, wo, C·k²]
  return tf.reshape(patches, [B, ho * wo, C * k * k]);
}

/**
 * Convolution with a different kernel per sample: x [B, H, W, Cin], kernels [B, kh·kw·Cin, Cout]
 * (each a flattened tfjs kernel [kh, kw, Cin, Cout]) → [B, H', W', Cout]. One batched matMul of
 * im2col patches with the kernels, reordered to the patches' (channel, row, column) order.
 */
export function perSampleConv2d(x: tf.Tensor4D, kernels: tf.Tensor3D, g: ConvGeometry): tf.Tensor4D {
  const [B, , , C] = x.shape;
  const [kb, p, cout] = kernels.shape;
  const k = g.kernel;
  if (kb !== B || p !== k * k * C) {
    throw new Error(
      `perSampleConv2d: kernels [${kernels.shape.join(', ')}] do not fit input [${x.shape.join(', ')}]; ` +
        `expected [${B}, ${k * k * C}, Cout]`,
    );
  }
  const [ho, wo] = outputSize(x.shape, k, g);
  // [B, kh·kw, Cin, Cout] → [B, Cin, kh·kw, Cout] → [B, Cin·kh·kw, Cout]
  const reordered = tf.reshape(tf.transpose(tf.reshape(kernels, [B, k * k, C, cout]), [0, 2, 1, 3]), [
    B,
    p,
    cout,
  ]);
  const y = tf.matMul(im2col(x, g), reordered); // [B, ho·wo, Cout]
  return tf.reshape(y, [B, ho, wo, cout]);
}
