import * as tf from '@tensorflow/tfjs-core';
import { Module } from './module.js';
import { kaimingNormal } from './init.js';
import { checkUnits, prefix } from '../sorted/slice.js';

export type Padding = 'same' | 'valid';

/** Output spatial size of a conv/pool with tfjs's 'same'/'valid' rules. */
export function convOutSize(size: number, kernel: number, stride: number, padding: Padding): number {
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
  readonly padding: Padding;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    seed: () => number,
    opts: { stride?: number; padding?: Padding; bias?: boolean; name?: string } = {},
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

  /** x: [B, H, W, in'] → [B, H', W', out]. */
  forward(x: tf.Tensor4D, out = this.outChannels): tf.Tensor4D {
    const cin = x.shape[3];
    checkUnits(cin, this.inChannels, this.name, 'input channels');
    checkUnits(out, this.outChannels, this.name, 'channels');
    const w = prefix(this.weight, [-1, -1, cin, out], this.name) as tf.Tensor4D;
    const y = tf.conv2d(x, w, this.stride, this.padding);
    return this.bias ? tf.add(y, prefix(this.bias, [out], this.name)) : y;
  }

  static cost(cin: number, cout: number, k: number, hOut: number, wOut: number, bias = false) {
    return { params: k * k * cin * cout + (bias ? cout : 0), flops: 2 * k * k * cin * cout * hOut * wOut };
  }
}

/** Depthwise 2-D convolution (channel multiplier 1), weight [kh, kw, C, 1]; channels follow x. */
export class DepthwiseConv2d extends Module {
  readonly weight: tf.Variable;
  readonly stride: number;
  constructor(
    readonly channels: number,
    readonly kernel: number,
    seed: () => number,
    opts: { stride?: number; name?: string } = {},
  ) {
    super();
    this.name = opts.name ?? 'dwconv';
    this.stride = opts.stride ?? 1;
    this.weight = this.addParam(
      'weight',
      kaimingNormal([kernel, kernel, channels, 1], kernel * kernel, seed()),
    );
  }
  readonly name: string;

  forward(x: tf.Tensor4D): tf.Tensor4D {
    const c = x.shape[3];
    checkUnits(c, this.channels, this.name, 'channels');
    const w = prefix(this.weight, [-1, -1, c, -1], this.name) as tf.Tensor4D;
    return tf.depthwiseConv2d(x, w, this.stride, 'same');
  }

  static cost(c: number, k: number, hOut: number, wOut: number) {
    return { params: k * k * c, flops: 2 * k * k * c * hOut * wOut };
  }
}
