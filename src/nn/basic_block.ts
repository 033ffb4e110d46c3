import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { posInt } from '../schema/fields.js';
import { Module, type ForwardContext } from './module.js';
import { Conv2d, convOutSize, convPadding, type ConvPadding, type PaddingMode } from './conv2d.js';
import { BatchNorm2d } from './batchnorm.js';
import { addRelu } from '../engine/ops/add_relu.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { convBn } from './conv_bn.js';

/**
 * A 3×3 convolution of a block, of any kind: a plain Conv2d, or a dynamic / partially dynamic /
 * compact one (src/dynamic). Elastic: `out` output channels, input channels read from x.
 */
export interface BlockConv extends Module {
  forward(x: tf.Tensor4D, out: number, ctx: ForwardContext): tf.Tensor4D;
}

/** Makes the block convolution `name` (e.g. `stages.0.1.conv2`) with this geometry. */
export type ConvFactory = (
  inChannels: number,
  outChannels: number,
  stride: number,
  name: string,
  seed: () => number,
  padding?: ConvPadding,
) => BlockConv;

/** Plain 3×3 convolutions (the default). */
export const staticConv: ConvFactory = (cin, cout, stride, name, seed, padding) =>
  new Conv2d(cin, cout, 3, seed, { stride, name, padding });

/** Parameters and FLOPs per sample of a block conv with cin × cout active channels on an h×w input. */
export function blockConvCost(conv: BlockConv, cin: number, cout: number, h: number, w: number): Cost {
  if (conv instanceof Conv2d) {
    const ho = convOutSize(h, conv.kernel, conv.stride, conv.padding);
    return Conv2d.cost(cin, cout, conv.kernel, ho, convOutSize(w, conv.kernel, conv.stride, conv.padding));
  }
  const costed = conv as BlockConv & { cost?: (h: number, w: number, cin: number, cout: number) => Cost };
  if (!costed.cost) throw new Error(`block conv ${conv.constructor.name} has no cost(h, w, cin, cout)`);
  return costed.cost(h, w, cin, cout);
}

/**
 * Zero-pads or slices the channels of x to `c`: the identity shortcut of a sorted residual
 * block when the active input and output widths differ (per-layer widths).
 */
export function matchChannels(x: tf.Tensor4D, c: number): tf.Tensor4D {
  const cin = x.shape[3];
  if (cin === c) return x;
  if (cin > c) return tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, c]);
  return tf.pad(x, [
    [0, 0],
    [0, 0],
    [0, 0],
    [0, c - cin],
  ]);
}

/**
 * The residual shortcut of a basic or bottleneck block: a 1×1 conv (with the block's stride) + BN
 * projection when the spec asks for one, else null, the identity (which needs stride 1).
 */
export function projectionShortcut(
  projection: boolean,
  inChannels: number,
  out: number,
  stride: number,
  seed: () => number,
  name: string,
): { conv: Conv2d; bn: BatchNorm2d } | null {
  if (!projection) {
    if (stride !== 1) throw new Error(`${name}: an identity shortcut needs stride 1, got ${stride}`);
    return null;
  }
  return {
    conv: new Conv2d(inChannels, out, 1, seed, { stride, name: `${name}.shortcut` }),
    bn: new BatchNorm2d(out, `${name}.shortcutBn`),
  };
}

/** What the shortcut adds to the block's output at `out` channels: the projection, or x sliced or padded. */
export function shortcutForward(
  block: { shortcut: Conv2d | null; shortcutBn: BatchNorm2d | null },
  x: tf.Tensor4D,
  out: number,
  ctx: ForwardContext,
): tf.Tensor4D {
  return block.shortcut && block.shortcutBn
    ? convBn(block.shortcut, block.shortcutBn, x, out, ctx)
    : matchChannels(x, out);
}

export const BasicBlockSpecSchema = z
  .object({
    mid: posInt,
    out: posInt,
    stride: posInt,
    /** 1×1 conv + BN shortcut (when the stride or width changes in the full model). */
    projection: z.boolean(),
  })
  .strict();
export type BasicBlockSpec = z.infer<typeof BasicBlockSpecSchema>;

/**
 * ResNet basic block (He et al. 2016): conv3×3-BN-ReLU-conv3×3-BN + shortcut, ReLU. The two 3×3
 * convolutions come from `makeConv` (static by default; DY-Conv or PAD for PAD-Net); the 1×1
 * projection shortcut stays static.
 */
export class BasicBlock extends Module {
  readonly conv1: BlockConv;
  readonly bn1: BatchNorm2d;
  readonly conv2: BlockConv;
  readonly bn2: BatchNorm2d;
  readonly shortcut: Conv2d | null;
  readonly shortcutBn: BatchNorm2d | null;

  constructor(
    readonly inChannels: number,
    readonly spec: BasicBlockSpec,
    seed: () => number,
    readonly name: string,
    makeConv: ConvFactory = staticConv,
    padding: PaddingMode = 'same',
  ) {
    super();
    const { mid, out, stride } = spec;
    const pad = convPadding(padding, 3);
    this.conv1 = this.addChild('conv1', makeConv(inChannels, mid, stride, `${name}.conv1`, seed, pad));
    this.bn1 = this.addChild('bn1', new BatchNorm2d(mid, `${name}.bn1`));
    this.conv2 = this.addChild('conv2', makeConv(mid, out, 1, `${name}.conv2`, seed, pad));
    this.bn2 = this.addChild('bn2', new BatchNorm2d(out, `${name}.bn2`));
    const shortcut = projectionShortcut(spec.projection, inChannels, out, stride, seed, name);
    this.shortcut = shortcut && this.addChild('shortcut', shortcut.conv);
    this.shortcutBn = shortcut && this.addChild('shortcutBn', shortcut.bn);
  }

  forward(x: tf.Tensor4D, widths: { mid: number; out: number }, ctx: ForwardContext): tf.Tensor4D {
    let h = convBn(this.conv1, this.bn1, x, widths.mid, ctx, 'relu');
    h = convBn(this.conv2, this.bn2, h, widths.out, ctx);
    const s = shortcutForward(this, x, widths.out, ctx);
    return addRelu(h, s);
  }

  /** Parameters and FLOPs per sample with `cin` input channels on a size×size input; the output size too. */
  cost(cin: number, widths: { mid: number; out: number }, size: number): { cost: Cost; size: number } {
    const out = convOutSize(size, 3, this.spec.stride, 'same');
    const bn = (ch: number): Cost => ({ params: 2 * ch, flops: 4 * ch * out * out });
    const c = addCost(
      zeroCost(),
      blockConvCost(this.conv1, cin, widths.mid, size, size),
      bn(widths.mid),
      blockConvCost(this.conv2, widths.mid, widths.out, out, out),
      bn(widths.out),
    );
    if (this.spec.projection) addCost(c, Conv2d.cost(cin, widths.out, 1, out, out), bn(widths.out));
    return { cost: c, size: out };
  }
}
