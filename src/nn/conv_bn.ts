import * as tf from '@tensorflow/tfjs-core';
import type { FusedActivation } from '../engine/kernels/activation.js';
import type { BatchNorm2d } from './batchnorm.js';
import { Conv2d, DepthwiseConv2d } from './conv2d.js';
import type { ForwardContext, Module } from './module.js';

/** A convolution that `convBn` can run: a static or depthwise one, or any block convolution (not folded). */
type AnyConv = Module & { forward(x: tf.Tensor4D, out: number, ctx: ForwardContext): tf.Tensor4D };

/**
 * conv → BatchNorm → activation, the unit of every CNN here. In evaluation with a FoldCache in the context
 * (inference, outside a gradient) a static or depthwise convolution runs as one fused convolution on its
 * weight prefix with the BatchNorm folded in, W·scale and bias·scale + shift per output channel (kept per
 * sub-model by the cache); otherwise, and for dynamic convolutions, the convolution, then the BatchNorm.
 * `out` is the active output channels (a depthwise convolution's follow its input).
 */
export function convBn(
  conv: AnyConv | Conv2d | DepthwiseConv2d,
  bn: BatchNorm2d,
  x: tf.Tensor4D,
  out: number,
  ctx: ForwardContext,
  activation: FusedActivation = 'linear',
): tf.Tensor4D {
  const folds = ctx.folds;
  const foldable = conv instanceof Conv2d || conv instanceof DepthwiseConv2d;
  if (foldable && folds?.enabled && ctx.mode === 'eval' && tf.engine().state.gradientDepth === 0)
    return folded(conv, bn, x, out, ctx.key, activation, folds);
  const y = conv instanceof DepthwiseConv2d ? conv.forward(x) : (conv as AnyConv).forward(x, out, ctx);
  return bn.forward(y, ctx, activation);
}

/** The fused convolution on sub-model `key`'s folded weight and bias, folded on first use. */
function folded(
  conv: Conv2d | DepthwiseConv2d,
  bn: BatchNorm2d,
  x: tf.Tensor4D,
  out: number,
  key: string,
  activation: FusedActivation,
  folds: NonNullable<ForwardContext['folds']>,
): tf.Tensor4D {
  const cin = x.shape[3];
  const depthwise = conv instanceof DepthwiseConv2d;
  if (depthwise) {
    conv.checkChannels(cin);
    out = cin;
  } else conv.checkChannels(cin, out);
  const { scale, shift } = bn.foldedScaleShift(out, key);
  const { weight } = conv;
  const bias = depthwise ? null : conv.bias;
  const [filter, b] = folds.get(conv, key, [weight.dataId, bias?.dataId, cin, out, scale, shift], () => {
    // Conv2d [fH, fW, in, out] scales its output channels (the last axis); a depthwise [fH, fW, C, 1] its C.
    const w = depthwise
      ? tf.mul(tf.slice(weight, [0, 0, 0, 0], [-1, -1, cin, -1]), tf.reshape(scale, [cin, 1]))
      : tf.mul(tf.slice(weight, [0, 0, 0, 0], [-1, -1, cin, out]), scale);
    // conv(x, W) + c, then ·scale + shift: the bias (when the convolution has one) is scaled too.
    return [w, bias ? tf.add(tf.mul(tf.slice(bias, 0, out), scale), shift) : tf.clone(shift)];
  });
  const fused = depthwise ? tf.fused.depthwiseConv2d : tf.fused.conv2d;
  return fused({
    x,
    filter: filter as tf.Tensor4D,
    bias: b,
    strides: conv.stride,
    pad: conv.padding,
    activation,
  });
}
