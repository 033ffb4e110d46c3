import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { posInt } from '../schema/fields.js';
import { Module, type ForwardContext } from './module.js';
import { Conv2d, convOutSize, convPadding, DepthwiseConv2d, type PaddingMode } from './conv2d.js';
import { BatchNorm2d } from './batchnorm.js';
import { matchChannels } from './basic_block.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { convBn } from './conv_bn.js';

export const InvertedResidualSpecSchema = z
  .object({
    /** Expanded (hidden) channels: in · expansion ratio. */
    hidden: posInt,
    out: posInt,
    stride: posInt,
    /** Residual connection; fixed by the FULL model (stride 1 and in = out there), so sub-models agree. */
    residual: z.boolean(),
    /**
     * false: no 1×1 expansion; the depthwise conv runs on the input (torchvision's blocks of
     * expansion 1), and `hidden` must equal the input channels. Default true.
     */
    expand: z.boolean().optional(),
  })
  .strict();
export type InvertedResidualSpec = z.infer<typeof InvertedResidualSpecSchema>;

/**
 * MobileNetV2 inverted residual (Sandler et al. 2018): 1×1 expand-BN-ReLU6, 3×3 depthwise-BN-ReLU6,
 * 1×1 project-BN (linear bottleneck), residual when stride 1 and widths match in the full model.
 * Without expansion (`spec.expand` false) the block starts at the depthwise conv.
 */
export class InvertedResidual extends Module {
  readonly expand: Conv2d | null;
  readonly bn1: BatchNorm2d | null;
  readonly depthwise: DepthwiseConv2d;
  readonly bn2: BatchNorm2d;
  readonly project: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly residual: boolean;

  constructor(
    readonly inChannels: number,
    readonly spec: InvertedResidualSpec,
    seed: () => number,
    readonly name: string,
    padding: PaddingMode = 'same',
  ) {
    super();
    const { hidden, out, stride } = spec;
    if (spec.expand === false) {
      if (hidden !== inChannels)
        throw new Error(
          `${name}: without expansion, hidden (${hidden}) must equal the input channels (${inChannels})`,
        );
      this.expand = null;
      this.bn1 = null;
    } else {
      this.expand = this.addChild(
        'expand',
        new Conv2d(inChannels, hidden, 1, seed, { name: `${name}.expand` }),
      );
      this.bn1 = this.addChild('bn1', new BatchNorm2d(hidden, `${name}.bn1`));
    }
    this.depthwise = this.addChild(
      'depthwise',
      new DepthwiseConv2d(hidden, 3, seed, {
        stride,
        name: `${name}.depthwise`,
        padding: convPadding(padding, 3),
      }),
    );
    this.bn2 = this.addChild('bn2', new BatchNorm2d(hidden, `${name}.bn2`));
    this.project = this.addChild('project', new Conv2d(hidden, out, 1, seed, { name: `${name}.project` }));
    this.bn3 = this.addChild('bn3', new BatchNorm2d(out, `${name}.bn3`));
    this.residual = spec.residual;
    if (spec.residual && stride !== 1)
      throw new Error(`${name}: a residual block needs stride 1, got ${stride}`);
  }

  /** Without expansion, `widths.hidden` is the input's channels (the depthwise conv follows x). */
  forward(x: tf.Tensor4D, widths: { hidden: number; out: number }, ctx: ForwardContext): tf.Tensor4D {
    let h = this.expand && this.bn1 ? convBn(this.expand, this.bn1, x, widths.hidden, ctx, 'relu6') : x;
    h = convBn(this.depthwise, this.bn2, h, h.shape[3], ctx, 'relu6');
    h = convBn(this.project, this.bn3, h, widths.out, ctx);
    return this.residual ? tf.add(h, matchChannels(x, widths.out)) : h;
  }

  /** Parameters and FLOPs per sample with `cin` input channels on a size×size input; the output size too. */
  cost(cin: number, widths: { hidden: number; out: number }, size: number): { cost: Cost; size: number } {
    const bn = (ch: number, at: number): Cost => ({ params: 2 * ch, flops: 4 * ch * at * at });
    const out = convOutSize(size, 3, this.spec.stride, 'same');
    const c = zeroCost();
    if (this.expand) addCost(c, Conv2d.cost(cin, widths.hidden, 1, size, size), bn(widths.hidden, size));
    addCost(
      c,
      DepthwiseConv2d.cost(widths.hidden, 3, out, out),
      bn(widths.hidden, out),
      Conv2d.cost(widths.hidden, widths.out, 1, out, out),
      bn(widths.out, out),
    );
    return { cost: c, size: out };
  }
}
