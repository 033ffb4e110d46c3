import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from './module.js';
import { Conv2d, convOutSize, convPadding, type PaddingMode } from './conv2d.js';
import { BatchNorm2d } from './batchnorm.js';
import { addRelu } from '../engine/ops/add_relu.js';
import {
  blockConvCost,
  projectionShortcut,
  shortcutForward,
  staticConv,
  type BasicBlockSpec,
  type BlockConv,
  type ConvFactory,
} from './basic_block.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { convBn } from './conv_bn.js';

/**
 * ResNet bottleneck block (He et al. 2016; torchvision's ResNet-50, "v1.5"): conv1×1-BN-ReLU,
 * conv3×3-BN-ReLU (the stride sits here, not on the 1×1), conv1×1-BN + shortcut, ReLU. `mid` is
 * the width of the two inner convolutions, `out` (4 · mid in torchvision) the block's output.
 * The 3×3 comes from `makeConv`, like the basic block's.
 */
export class Bottleneck extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: BlockConv;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
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
    this.conv1 = this.addChild('conv1', new Conv2d(inChannels, mid, 1, seed, { name: `${name}.conv1` }));
    this.bn1 = this.addChild('bn1', new BatchNorm2d(mid, `${name}.bn1`));
    this.conv2 = this.addChild(
      'conv2',
      makeConv(mid, mid, stride, `${name}.conv2`, seed, convPadding(padding, 3)),
    );
    this.bn2 = this.addChild('bn2', new BatchNorm2d(mid, `${name}.bn2`));
    this.conv3 = this.addChild('conv3', new Conv2d(mid, out, 1, seed, { name: `${name}.conv3` }));
    this.bn3 = this.addChild('bn3', new BatchNorm2d(out, `${name}.bn3`));
    const shortcut = projectionShortcut(spec.projection, inChannels, out, stride, seed, name);
    this.shortcut = shortcut && this.addChild('shortcut', shortcut.conv);
    this.shortcutBn = shortcut && this.addChild('shortcutBn', shortcut.bn);
  }

  forward(x: tf.Tensor4D, widths: { mid: number; out: number }, ctx: ForwardContext): tf.Tensor4D {
    let h = convBn(this.conv1, this.bn1, x, widths.mid, ctx, 'relu');
    h = convBn(this.conv2, this.bn2, h, widths.mid, ctx, 'relu');
    h = convBn(this.conv3, this.bn3, h, widths.out, ctx);
    const s = shortcutForward(this, x, widths.out, ctx);
    return addRelu(h, s);
  }

  /** Parameters and FLOPs per sample with `cin` input channels on a size×size input; the output size too. */
  cost(cin: number, widths: { mid: number; out: number }, size: number): { cost: Cost; size: number } {
    const out = convOutSize(size, 3, this.spec.stride, 'same');
    const bn = (ch: number, at: number): Cost => ({ params: 2 * ch, flops: 4 * ch * at * at });
    const c = addCost(
      zeroCost(),
      Conv2d.cost(cin, widths.mid, 1, size, size),
      bn(widths.mid, size),
      blockConvCost(this.conv2, widths.mid, widths.mid, size, size),
      bn(widths.mid, out),
      Conv2d.cost(widths.mid, widths.out, 1, out, out),
      bn(widths.out, out),
    );
    if (this.spec.projection) addCost(c, Conv2d.cost(cin, widths.out, 1, out, out), bn(widths.out, out));
    return { cost: c, size: out };
  }
}
