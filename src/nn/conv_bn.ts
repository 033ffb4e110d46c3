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
  if (folds?.enabled && ctx.mode === 'eval' && tf.engine().state.gradientDepth === 0) {
    if (conv instanceof Conv2d) return foldedConv(conv, bn, x, out, ctx.key, activation, folds);
    if (conv instanceof DepthwiseConv2d) return foldedDepthwise(conv, bn, x, ctx.key, activation, folds);
  }
  const y = conv instanceof DepthwiseConv2d ? conv.forward(x) : (conv as AnyConv).forward(x, out, ctx);
  return bn.forward(y, ctx, activation);
}

type Folds = NonNullable<ForwardContext['folds']>;

function foldedConv(
  conv: Conv2d,
  bn: BatchNorm2d,
  x: tf.Tensor4D,
  out: number,
  key: string,
  activation: FusedActivation,
  folds: Folds,
): tf.Tensor4D {
  const cin = x.shape[3];
  conv.checkChannels(cin, out);
  const { scale, shift } = bn.foldedScaleShift(out, key);
  const { weight, bias } = conv;
  const [filter, b] = folds.get(conv, key, [weight.dataId, bias?.dataId, cin, out, scale, shift], () => {
    const w = tf.mul(tf.slice(weight, [0, 0, 0, 0], [-1, -1, cin, out]), scale);
    // conv(x, W) + c, then ·scale + shift: the bias (when the convolution has one) is scaled too.
    const b = bias ? tf.add(tf.mul(tf.slice(bias, 0, out), scale), shift) : tf.clone(shift);
    return [w, b];
  });
  return tf.fused.conv2d({
    x,
    filter: filter as tf.Tensor4D,
    bias: b,
    strides: conv.stride,
    pad: conv.padding,
    activation,
  });
}

function foldedDepthwise(
  conv: DepthwiseConv2d,
  bn: BatchNorm2d,
  x: tf.Tensor4D,
  key: string,
  activation: FusedActivation,
  folds: Folds,
): tf.Tensor4D {
  const c = x.shape[3];
  conv.checkChannels(c);
  const { scale, shift } = bn.foldedScaleShift(c, key);
  const { weight } = conv;
  const [filter, b] = folds.get(conv, key, [weight.dataId, c, scale, shift], () => [
    tf.mul(tf.slice(weight, [0, 0, 0, 0], [-1, -1, c, -1]), tf.reshape(scale, [c, 1])),
    tf.clone(shift),
  ]);
  return tf.fused.depthwiseConv2d({
    x,
    filter: filter as tf.Tensor4D,
    bias: b,
    strides: conv.stride,
    pad: conv.padding,
    activation,
  });
}
