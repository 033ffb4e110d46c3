import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from './module.js';
import { Conv2d } from './conv2d.js';
import { BatchNorm2d } from './batchnorm.js';

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

export interface BasicBlockSpec {
  mid: number;
  out: number;
  stride: number;
  /** 1×1 conv + BN shortcut (when the stride or width changes in the full model). */
  projection: boolean;
}

/** ResNet basic block (He et al. 2016): conv3×3-BN-ReLU-conv3×3-BN + shortcut, ReLU. */
export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly shortcut: Conv2d | null;
  readonly shortcutBn: BatchNorm2d | null;

  constructor(
    readonly inChannels: number,
    readonly spec: BasicBlockSpec,
    seed: () => number,
    readonly name: string,
  ) {
    super();
    const { mid, out, stride } = spec;
    this.conv1 = this.addChild(
      'conv1',
      new Conv2d(inChannels, mid, 3, seed, { stride, name: `${name}.conv1` }),
    );
    this.bn1 = this.addChild('bn1', new BatchNorm2d(mid, `${name}.bn1`));
    this.conv2 = this.addChild('conv2', new Conv2d(mid, out, 3, seed, { name: `${name}.conv2` }));
    this.bn2 = this.addChild('bn2', new BatchNorm2d(out, `${name}.bn2`));
    if (spec.projection) {
      this.shortcut = this.addChild(
        'shortcut',
        new Conv2d(inChannels, out, 1, seed, { stride, name: `${name}.shortcut` }),
      );
      this.shortcutBn = this.addChild('shortcutBn', new BatchNorm2d(out, `${name}.shortcutBn`));
    } else {
      if (stride !== 1) throw new Error(`${name}: an identity shortcut needs stride 1, got ${stride}`);
      this.shortcut = null;
      this.shortcutBn = null;
    }
  }

  forward(x: tf.Tensor4D, widths: { mid: number; out: number }, ctx: ForwardContext): tf.Tensor4D {
    let h = tf.relu(this.bn1.forward(this.conv1.forward(x, widths.mid), ctx));
    h = this.bn2.forward(this.conv2.forward(h, widths.out), ctx);
    const s =
      this.shortcut && this.shortcutBn
        ? this.shortcutBn.forward(this.shortcut.forward(x, widths.out), ctx)
        : matchChannels(x, widths.out);
    return tf.relu(tf.add(h, s));
  }
}
