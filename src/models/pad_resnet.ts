/**
 * A small ResNet-style CNN (for 28×28 grey images such as Fashion-MNIST) whose 3×3 block
 * convolutions are static, fully dynamic (DY-Conv) or partially dynamic (PAD-Net): the one config
 * field `conv` switches them. The stem and the 1×1 shortcuts stay static, as in Chen et al. (the
 * first layer is kept static there too). BatchNorm statistics live under `ctx.key` ('full').
 *
 * ```ts
 * const model = new PadResNet({ ...PAD_RESNET_DEFAULTS, conv: 'pad' });
 * const { logits } = model.forward(x, { mode: 'train', key: 'full', temperature: 30 });
 * ```
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '../nn/module.js';
import { Conv2d, convOutSize } from '../nn/conv2d.js';
import { BatchNorm2d } from '../nn/batchnorm.js';
import { Linear } from '../nn/linear.js';
import { globalAvgPool } from '../nn/functional.js';
import { seedStream } from '../nn/init.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { DynamicConv2d } from '../dynamic/dynamic_conv.js';
import { PadConv2d, LAMBDA_MODES, type LambdaMode } from '../dynamic/partial.js';
import { CompactPadConv2d, copyMatchingState } from '../dynamic/compact.js';
import type { DynamicContext, DynamicModel, DynamicOutput } from '../dynamic/context.js';

export type ConvMode = 'static' | 'dynamic' | 'pad';
export const CONV_MODES: readonly ConvMode[] = ['static', 'dynamic', 'pad'];

export interface PadResNetConfig {
  inChannels: number;
  imageSize: number;
  classes: number;
  /** Channels of the static 3×3 stem. */
  stem: number;
  /** Channels per stage; every stage but the first starts with stride 2. */
  widths: number[];
  /** Basic blocks per stage. */
  blocks: number[];
  /** What the 3×3 block convolutions are. */
  conv: ConvMode;
  /** K, kernels per dynamic conv. */
  kernels: number;
  /** r, the attention's reduction ratio. */
  reduction: number;
  /** Which PAD scale factors are learned (conv 'pad' only). */
  lambdaMode: LambdaMode;
}

export const PAD_RESNET_DEFAULTS: PadResNetConfig = {
  inChannels: 1,
  imageSize: 28,
  classes: 10,
  stem: 16,
  widths: [16, 32, 64],
  blocks: [1, 1, 1],
  conv: 'static',
  kernels: 4,
  reduction: 4,
  lambdaMode: 'both',
};

export function checkPadResNetConfig(c: PadResNetConfig): PadResNetConfig {
  if (!CONV_MODES.includes(c.conv))
    throw new Error(`pad-resnet: conv '${c.conv}' is not one of ${CONV_MODES.join(', ')}`);
  if (!LAMBDA_MODES.includes(c.lambdaMode)) {
    throw new Error(`pad-resnet: lambdaMode '${c.lambdaMode}' is not one of ${LAMBDA_MODES.join(', ')}`);
  }
  if (c.widths.length === 0 || c.widths.length !== c.blocks.length) {
    throw new Error(`pad-resnet: ${c.widths.length} stage widths but ${c.blocks.length} block counts`);
  }
  if (c.blocks.some((b) => !Number.isInteger(b) || b < 1))
    throw new Error(`pad-resnet: blocks [${c.blocks}] must be ≥ 1`);
  return c;
}

/** A 3×3 block convolution of any kind (CompactPadConv2d after `deploy()`). */
export type BlockConv = Conv2d | DynamicConv2d | PadConv2d | CompactPadConv2d;

function applyConv(conv: BlockConv, x: tf.Tensor4D, ctx: DynamicContext): tf.Tensor4D {
  return conv instanceof Conv2d ? conv.forward(x) : conv.forward(x, ctx);
}

function convCost(conv: BlockConv, size: number): Cost {
  if (conv instanceof Conv2d) {
    const out = convOutSize(size, conv.kernel, conv.stride, conv.padding);
    return Conv2d.cost(conv.inChannels, conv.outChannels, conv.kernel, out, out);
  }
  return conv.cost(size, size);
}

/** conv3×3-BN-ReLU-conv3×3-BN + shortcut (1×1 conv + BN when the shape changes), ReLU. */
export class PadBasicBlock extends Module {
  readonly bn1: BatchNorm2d;
  readonly bn2: BatchNorm2d;
  readonly shortcut: Conv2d | null;
  readonly shortcutBn: BatchNorm2d | null;
  constructor(
    readonly conv1: BlockConv,
    readonly conv2: BlockConv,
    inChannels: number,
    out: number,
    readonly stride: number,
    seed: () => number,
    readonly name: string,
  ) {
    super();
    this.addChild('conv1', conv1);
    this.bn1 = this.addChild('bn1', new BatchNorm2d(out, `${name}.bn1`));
    this.addChild('conv2', conv2);
    this.bn2 = this.addChild('bn2', new BatchNorm2d(out, `${name}.bn2`));
    const projection = stride !== 1 || inChannels !== out;
    this.shortcut = projection
      ? this.addChild('shortcut', new Conv2d(inChannels, out, 1, seed, { stride, name: `${name}.shortcut` }))
      : null;
    this.shortcutBn = projection
      ? this.addChild('shortcutBn', new BatchNorm2d(out, `${name}.shortcutBn`))
      : null;
  }

  forward(x: tf.Tensor4D, ctx: DynamicContext): tf.Tensor4D {
    let h = tf.relu(this.bn1.forward(applyConv(this.conv1, x, ctx), ctx));
    h = this.bn2.forward(applyConv(this.conv2, h, ctx), ctx);
    const s = this.shortcut && this.shortcutBn ? this.shortcutBn.forward(this.shortcut.forward(x), ctx) : x;
    return tf.relu(tf.add(h, s));
  }

  /** Cost for an input of size×size; returns the output size too. */
  cost(size: number): { cost: Cost; size: number } {
    const out = convOutSize(size, 3, this.stride, 'same');
    const channels = this.bn2.channels;
    const bn = (): Cost => ({ params: 2 * channels, flops: 4 * channels * out * out });
    const c = addCost(zeroCost(), convCost(this.conv1, size), bn(), convCost(this.conv2, out), bn());
    if (this.shortcut) addCost(c, Conv2d.cost(this.shortcut.inChannels, channels, 1, out, out), bn());
    return { cost: c, size: out };
  }
}

export class PadResNet extends Module implements DynamicModel {
  readonly family = 'pad-resnet';
  readonly input = 'image';
  readonly config: PadResNetConfig;
  readonly stem: Conv2d;
  readonly stemBn: BatchNorm2d;
  readonly blocks: ModuleList<PadBasicBlock>;
  readonly head: Linear;

  /**
   * `replace(name, cin, cout, stride)` may supply a block convolution instead of the one the
   * config asks for (`deploy()` passes compact layers); names are `blocks.{i}.conv{1|2}`.
   */
  constructor(
    config: PadResNetConfig,
    seed = 1,
    replace?: (name: string, cin: number, cout: number, stride: number) => BlockConv | undefined,
  ) {
    super();
    this.config = checkPadResNetConfig(config);
    const c = config;
    const s = seedStream(seed);
    const makeConv = (name: string, cin: number, cout: number, stride: number): BlockConv => {
      const given = replace?.(name, cin, cout, stride);
      if (given) return given;
      const opts = { stride, kernels: c.kernels, reduction: c.reduction, name };
      switch (c.conv) {
        case 'static':
          return new Conv2d(cin, cout, 3, s, { stride, name });
        case 'dynamic':
          return new DynamicConv2d(cin, cout, 3, s, opts);
        case 'pad':
          return new PadConv2d(cin, cout, 3, s, { ...opts, lambdaMode: c.lambdaMode });
      }
    };
    this.stem = this.addChild('stem', new Conv2d(c.inChannels, c.stem, 3, s, { name: 'stem' }));
    this.stemBn = this.addChild('stemBn', new BatchNorm2d(c.stem, 'stemBn'));
    const blocks: PadBasicBlock[] = [];
    let cin = c.stem;
    c.widths.forEach((w, stage) => {
      for (let b = 0; b < c.blocks[stage]; b++) {
        const stride = b === 0 && stage > 0 ? 2 : 1;
        const name = `blocks.${blocks.length}`;
        const conv1 = makeConv(`${name}.conv1`, cin, w, stride);
        const conv2 = makeConv(`${name}.conv2`, w, w, 1);
        blocks.push(new PadBasicBlock(conv1, conv2, cin, w, stride, s, name));
        cin = w;
      }
    });
    this.blocks = this.addChild('blocks', new ModuleList(blocks));
    this.head = this.addChild('head', new Linear(cin, c.classes, s, { name: 'head' }));
  }

  forward(x: tf.Tensor, ctx: DynamicContext): DynamicOutput {
    const c = this.config;
    if (x.rank !== 4 || x.shape[3] !== c.inChannels) {
      throw new Error(`pad-resnet: input must be [B, H, W, ${c.inChannels}], got [${x.shape.join(', ')}]`);
    }
    let h = tf.relu(this.stemBn.forward(this.stem.forward(x as tf.Tensor4D), ctx));
    for (const block of this.blocks.items) h = block.forward(h, ctx); // [B, H', W', C]
    return { logits: this.head.forward(globalAvgPool(h)) as tf.Tensor2D, auxLoss: tf.scalar(0) };
  }

  /** Deployed parameters and FLOPs per sample; PAD layers are counted as after `deploy()`. */
  cost(): Cost {
    const c = this.config;
    let size = c.imageSize;
    const total = addCost(zeroCost(), Conv2d.cost(c.inChannels, c.stem, 3, size, size), {
      params: 2 * c.stem,
      flops: 4 * c.stem * size * size,
    });
    for (const block of this.blocks.items) {
      const r = block.cost(size);
      addCost(total, r.cost);
      size = r.size;
    }
    const last = c.widths[c.widths.length - 1];
    return addCost(total, { params: 0, flops: last * size * size }, Linear.cost(last, c.classes));
  }

  /** The block convolutions by name. */
  blockConvs(): Map<string, BlockConv> {
    const out = new Map<string, BlockConv>();
    this.blocks.items.forEach((b, i) => {
      out.set(`blocks.${i}.conv1`, b.conv1);
      out.set(`blocks.${i}.conv2`, b.conv2);
    });
    return out;
  }

  /**
   * The deployed copy (PAD-Net §3.3): PAD convs become CompactPadConv2d (packed values, λ folded,
   * static kernel precomputed); everything else, BatchNorm statistics included, is copied.
   * Its outputs equal this model's.
   */
  deploy(): PadResNet {
    const convs = this.blockConvs();
    const deployed = new PadResNet(this.config, 1, (name) => {
      const conv = convs.get(name);
      return conv instanceof PadConv2d ? new CompactPadConv2d(conv) : undefined;
    });
    copyMatchingState(this, deployed);
    return deployed;
  }
}
