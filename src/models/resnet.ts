/**
 * A sorted ResNet: elastic depth (blocks, see depth_order.ts) and width per layer; one shared
 * global-pool + linear head. CIFAR-style by default (3×3 stem, basic blocks, TensorFlow 'same'
 * padding); with `stemLayout: 'imagenet'`, `block: 'bottleneck'` and `padding: 'symmetric'` it is
 * torchvision's ResNet-18/34/50 layer for layer (torchvision.ts builds those configs).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { oneOf, posInt, posInts } from '../schema/fields.js';
import { Module, type ForwardContext } from '../nn/module.js';
import { Conv2d, convOutSize, convPadding, PADDING_MODES, type PaddingMode } from '../nn/conv2d.js';
import { BatchNorm2d } from '../nn/batchnorm.js';
import {
  BasicBlock,
  BasicBlockSpecSchema,
  staticConv,
  type BasicBlockSpec,
  type ConvFactory,
} from '../nn/basic_block.js';
import { Bottleneck } from '../nn/bottleneck.js';
import { Linear } from '../nn/linear.js';
import { globalAvgPool, maxPool } from '../nn/functional.js';
import { seedStream } from '../nn/init.js';
import type { SubModel } from '../sorted/submodel.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { checkImageInput, checkLayerNames, layerUnits, type SortedModel } from './model.js';
import { imageShapeFields, Stages, type ActiveBlock, type StagedImageShape } from './staged.js';
import { convBn } from '../nn/conv_bn.js';

export type ResNetBlock = 'basic' | 'bottleneck';
export type StemLayout = 'cifar' | 'imagenet';

export const ResNetConfigSchema = z
  .object({
    inChannels: posInt,
    imageSize: posInt,
    classes: posInt,
    stem: posInt,
    stages: z.array(z.array(BasicBlockSpecSchema)),
    /** 'basic' (default: two 3×3) or 'bottleneck' (1×1, 3×3 with the stride, 1×1 to `out`; ResNet-50). */
    block: oneOf<ResNetBlock>(['basic', 'bottleneck']).optional(),
    /** 'cifar' (default: 3×3 stride 1) or 'imagenet' (7×7 stride 2, then a 3×3 stride-2 max-pool). */
    stemLayout: oneOf<StemLayout>(['cifar', 'imagenet']).optional(),
    /** 'same' (default, TensorFlow's) or 'symmetric' (PyTorch's (k − 1) / 2 per side). */
    padding: oneOf<PaddingMode>(PADDING_MODES).optional(),
  })
  .strict();
export type ResNetConfig = z.infer<typeof ResNetConfigSchema>;

/** resnetConfig's shorthand for `stages`: the width and the number of blocks of each stage. */
export const RESNET_SHORTHAND = { widths: posInts, blocks: posInts };

/** A ResNet's image, stem and stages: widths and blocks per stage. */
export interface ResNetStagesInput extends StagedImageShape {
  widths: number[];
  blocks: number[];
}

/**
 * A ResNet config from stage widths: `blocks` per stage, stride 2 at the start of every stage but
 * the first. Bottleneck stages output `expansion` (default 4) × their width.
 */
export function resnetConfig(
  o: ResNetStagesInput & {
    block?: ResNetBlock;
    stemLayout?: StemLayout;
    padding?: PaddingMode;
    expansion?: number;
  },
): ResNetConfig {
  let cin = o.stem;
  const expansion = o.block === 'bottleneck' ? (o.expansion ?? 4) : 1;
  const stages = o.widths.map((w, s) =>
    Array.from({ length: o.blocks[s] }, (_, b) => {
      const stride = b === 0 && s > 0 ? 2 : 1;
      const out = w * expansion;
      const spec = { mid: w, out, stride, projection: stride !== 1 || cin !== out };
      cin = out;
      return spec;
    }),
  );
  return {
    ...imageShapeFields(o),
    stages,
    // Only when given: configs (and checkpoints) of the default layout stay as they were.
    ...(o.block !== undefined && { block: o.block }),
    ...(o.stemLayout !== undefined && { stemLayout: o.stemLayout }),
    ...(o.padding !== undefined && { padding: o.padding }),
  };
}

/** Throws on layout options a ResNet does not know. */
export function checkResNetLayout(c: ResNetConfig, family = 'resnet'): void {
  const one = <T extends string>(k: string, v: T | undefined, known: readonly T[]) => {
    if (v !== undefined && !known.includes(v))
      throw new Error(`${family}: ${k} '${v}' is not one of ${known.join(', ')}`);
  };
  one('block', c.block, ['basic', 'bottleneck']);
  one('stemLayout', c.stemLayout, ['cifar', 'imagenet']);
  one('padding', c.padding, PADDING_MODES);
}

type BlockWidthsOf = { mid: number; out: number };

interface Plan {
  stem: number;
  blocks: ActiveBlock<BlockWidthsOf>[];
}

export class ResNet<C extends ResNetConfig = ResNetConfig> extends Module implements SortedModel<C> {
  readonly family: string = 'resnet';
  readonly input = 'image';
  readonly stem: Conv2d;
  readonly stemBn: BatchNorm2d;
  readonly stages: Stages<BasicBlockSpec, BlockWidthsOf, BasicBlock | Bottleneck>;
  readonly head: Linear;

  /** `makeConv` makes the blocks' 3×3 convolutions (static by default; see PadResNet). */
  constructor(
    readonly config: C,
    seed = 1,
    makeConv: ConvFactory = staticConv,
  ) {
    super();
    const s = seedStream(seed);
    if (config.stages.length === 0 || config.stages.some((st) => st.length === 0)) {
      throw new Error('resnet: every stage needs at least one block');
    }
    checkResNetLayout(config);
    const padding = config.padding ?? 'same';
    const k = this.stemKernel;
    this.stem = this.addChild(
      'stem',
      new Conv2d(config.inChannels, config.stem, k, s, {
        name: 'stem',
        stride: this.stemStride,
        padding: convPadding(padding, k),
      }),
    );
    this.stemBn = this.addChild('stemBn', new BatchNorm2d(config.stem, 'stemBn'));
    const Block = config.block === 'bottleneck' ? Bottleneck : BasicBlock;
    this.stages = this.addChild(
      'stages',
      new Stages(
        'resnet',
        config.stem,
        config.stages,
        (cin, spec, name) => new Block(cin, spec, s, name, makeConv, padding),
      ),
    );
    this.head = this.addChild(
      'head',
      new Linear(this.stages.outChannels, config.classes, s, { name: 'head' }),
    );
  }

  get maxDepth(): number {
    return this.stages.maxDepth;
  }

  private get imagenet(): boolean {
    return this.config.stemLayout === 'imagenet';
  }
  private get stemKernel(): number {
    return this.imagenet ? 7 : 3;
  }
  private get stemStride(): number {
    return this.imagenet ? 2 : 1;
  }

  /** The layer setting a block's output width: conv2 of a basic block, conv3 of a bottleneck. */
  private get outLayer(): string {
    return this.config.block === 'bottleneck' ? 'conv3' : 'conv2';
  }

  /** Per-layer widths: `conv1` sets a block's inner width (a bottleneck's conv1 and conv2), conv2/conv3 its output. */
  elasticLayers(): string[] {
    return ['stem', ...this.stages.elasticLayers((n) => [`${n}.conv1`, `${n}.${this.outLayer}`])];
  }

  private plan(sub: SubModel): Plan {
    return {
      stem: layerUnits(sub, 'stem', this.config.stem),
      blocks: this.stages.plan(sub, (spec, n) => ({
        mid: layerUnits(sub, `${n}.conv1`, spec.mid),
        out: layerUnits(sub, `${n}.${this.outLayer}`, spec.out),
      })),
    };
  }

  /** The stem: conv-BN-ReLU, and the ImageNet layout's 3×3 stride-2 max-pool. */
  private stemForward(x: tf.Tensor4D, width: number, ctx: ForwardContext): tf.Tensor4D {
    const h = convBn(this.stem, this.stemBn, x, width, ctx, 'relu');
    if (!this.imagenet) return h;
    return maxPool(h, 3, 2, this.config.padding === 'symmetric' ? 1 : 'same');
  }

  validate(sub: SubModel): void {
    checkLayerNames(sub, this.elasticLayers(), 'resnet');
    this.plan(sub);
  }

  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor2D {
    const p = this.plan(sub);
    const h = this.stemForward(checkImageInput(x, this.config.inChannels, 'resnet'), p.stem, ctx);
    return this.head.forward(globalAvgPool(this.stages.forward(h, p.blocks, ctx))) as tf.Tensor2D;
  }

  cost(sub: SubModel): Cost {
    const p = this.plan(sub);
    const c = zeroCost();
    let size = convOutSize(this.config.imageSize, this.stemKernel, this.stemStride, 'same');
    const bn = (ch: number): Cost => ({ params: 2 * ch, flops: 4 * ch * size * size });
    addCost(c, Conv2d.cost(this.config.inChannels, p.stem, this.stemKernel, size, size), bn(p.stem));
    if (this.imagenet) {
      size = convOutSize(size, 3, 2, 'same');
      addCost(c, { params: 0, flops: 9 * p.stem * size * size }); // the max-pool's comparisons
    }
    const body = this.stages.cost(p.stem, p.blocks, size);
    const [cin, out] = [body.channels, body.size];
    return addCost(
      c,
      body.cost,
      { params: 0, flops: cin * out * out },
      Linear.cost(cin, this.config.classes),
    );
  }

  shrink(sub: SubModel): C {
    const p = this.plan(sub);
    const stages = this.stages.shrink(p.blocks, (spec, w) => ({ ...spec, mid: w.mid, out: w.out }));
    return { ...this.config, stem: p.stem, stages };
  }
}
