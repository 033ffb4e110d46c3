import * as tf from '@tensorflow/tfjs-core';
import { Module } from './module.js';
import { kaimingNormal } from './init.js';
import { checkUnits, prefix } from '../sorted/slice.js';
import { prefixConv2d } from '../engine/ops/prefix_conv2d.js';
import type { FusedActivation } from '../engine/kernels/activation.js';
import { activate } from '../engine/ops/activation.js';

export type Padding = 'same' | 'valid';

/** A static convolution's padding: TensorFlow's 'same' / 'valid', or p zeros on every side (PyTorch's `padding=p`). */
export type ConvPadding = Padding | number;

/**
 * How a model pads its odd-kernel convolutions: TensorFlow's 'same' (an odd pad total puts the
 * extra zero at the bottom/right), or PyTorch's symmetric (k − 1) / 2 on every side. Both give
 * the same output size; a stride-2 layer samples different pixels.
 */
export type PaddingMode = 'same' | 'symmetric';
export const PADDING_MODES: readonly PaddingMode[] = ['same', 'symmetric'];

/** The padding a k×k convolution gets under `mode`. */
export function convPadding(mode: PaddingMode, kernel: number): ConvPadding {
  return mode === 'symmetric' ? (kernel - 1) / 2 : 'same';
}

/** Output spatial size of a conv/pool with tfjs's 'same'/'valid' rules, or p zeros per side. */
export function convOutSize(size: number, kernel: number, stride: number, padding: ConvPadding): number {
  if (typeof padding === 'number') return Math.floor((size + 2 * padding - kernel) / stride) + 1;
  return padding === 'same' ? Math.ceil(size / stride) : Math.floor((size - kernel) / stride) + 1;
}

/**
 * 2-D convolution, NHWC, weight [kh, kw, in, out] (tfjs layout). Elastic: `forward(x, out)`
 * uses W[:, :, :in', :out] with in' read from x.
 */
export class Conv2d extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;
  readonly stride: number;
  readonly padding: ConvPadding;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    seed: () => number,
    opts: { stride?: number; padding?: ConvPadding; bias?: boolean; name?: string } = {},
  ) {
    super();
    this.name = opts.name ?? 'conv';
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 'same';
    const fanIn = kernel * kernel * inChannels;
    this.weight = this.addParam(
      'weight',
      kaimingNormal([kernel, kernel, inChannels, outChannels], fanIn, seed()),
    );
    this.bias = opts.bias ? this.addParam('bias', tf.zeros([outChannels])) : null;
  }
  readonly name: string;

  /** x: [B, H, W, in'] → [B, H', W', out], plus the bias. */
  forward(x: tf.Tensor4D, out = this.outChannels): tf.Tensor4D {
    return this.activated(x, 'linear', out);
  }

  /** `forward`, then `activation`; the bias and the activation run inside the convolution where the engine can. */
  activated(x: tf.Tensor4D, activation: FusedActivation, out = this.outChannels): tf.Tensor4D {
    const cin = x.shape[3];
    this.checkChannels(cin, out);
    // The weight prefix is read in place where the engine can (oneDNN), else sliced; explicit
    // (PyTorch-style) padding goes through the sliced path.
    if (typeof this.padding !== 'number')
      return prefixConv2d(x, this.weight as tf.Tensor4D, out, this.stride, this.padding, this.name, {
        bias: this.bias as tf.Tensor1D | null,
        activation,
      });
    const w = prefix(this.weight, [-1, -1, cin, out], this.name) as tf.Tensor4D;
    const y = tf.conv2d(x, w, this.stride, this.padding);
    const biased: tf.Tensor4D = this.bias ? tf.add(y, prefix(this.bias, [out], this.name)) : y;
    return activate(biased, activation);
  }

  /** Throws naming the layer when `cin` input or `out` output channels do not fit its weight. */
  checkChannels(cin: number, out = this.outChannels): void {
    checkUnits(cin, this.inChannels, this.name, 'input channels');
    checkUnits(out, this.outChannels, this.name, 'channels');
  }

  static cost(cin: number, cout: number, k: number, hOut: number, wOut: number, bias = false) {
    return { params: k * k * cin * cout + (bias ? cout : 0), flops: 2 * k * k * cin * cout * hOut * wOut };
  }
}

/** Depthwise 2-D convolution (channel multiplier 1), weight [kh, kw, C, 1]; channels follow x. */
export class DepthwiseConv2d extends Module {
  readonly weight: tf.Variable;
  readonly stride: number;
  readonly padding: ConvPadding;
  constructor(
    readonly channels: number,
    readonly kernel: number,
    seed: () => number,
    opts: { stride?: number; padding?: ConvPadding; name?: string } = {},
  ) {
    super();
    this.name = opts.name ?? 'dwconv';
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 'same';
    this.weight = this.addParam(
      'weight',
      kaimingNormal([kernel, kernel, channels, 1], kernel * kernel, seed()),
    );
  }
  readonly name: string;

  forward(x: tf.Tensor4D): tf.Tensor4D {
    const c = x.shape[3];
    this.checkChannels(c);
    const w = prefix(this.weight, [-1, -1, c, -1], this.name) as tf.Tensor4D;
    return tf.depthwiseConv2d(x, w, this.stride, this.padding);
  }

  /** Throws naming the layer when its input has channels its weight does not cover. */
  checkChannels(c: number): void {
    checkUnits(c, this.channels, this.name, 'channels');
  }

  static cost(c: number, k: number, hOut: number, wOut: number) {
    return { params: k * k * c, flops: 2 * k * k * c * hOut * wOut };
  }
}
