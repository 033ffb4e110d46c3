/**
 * A sorted CIFAR-style ResNet (basic blocks): elastic depth (blocks, see depth_order.ts) and
 * width per layer; one shared global-pool + linear head.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from '../nn/module.js';
import { Conv2d } from '../nn/conv2d.js';
import { BatchNorm2d } from '../nn/batchnorm.js';
import { BasicBlock, staticConv, type BasicBlockSpec, type ConvFactory } from '../nn/basic_block.js';
import { Linear } from '../nn/linear.js';
import { globalAvgPool } from '../nn/functional.js';
import { seedStream } from '../nn/init.js';
import type { SubModel } from '../sorted/submodel.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { checkImageInput, checkLayerNames, layerUnits, type SortedModel } from './model.js';
import { Stages, type ActiveBlock } from './staged.js';

export interface ResNetConfig {
  inChannels: number;
  imageSize: number;
  classes: number;
  stem: number;
  stages: BasicBlockSpec[][];
}

/** A ResNet config from stage widths: `blocks` per stage, stride 2 at the start of every stage but the first. */
export function resnetConfig(o: {
  inChannels: number;
  imageSize: number;
  classes: number;
  stem: number;
  widths: number[];
  blocks: number[];
}): ResNetConfig {
  let cin = o.stem;
  const stages = o.widths.map((w, s) =>
    Array.from({ length: o.blocks[s] }, (_, b) => {
      const stride = b === 0 && s > 0 ? 2 : 1;
      const spec = { mid: w, out: w, stride, projection: stride !== 1 || cin !== w };
      cin = w;
      return spec;
    }),
  );
  return { inChannels: o.inChannels, imageSize: o.imageSize, classes: o.classes, stem: o.stem, stages };
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
  readonly stages: Stages<BasicBlockSpec, BlockWidthsOf, BasicBlock>;
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
    this.stem = this.addChild('stem', new Conv2d(config.inChannels, config.stem, 3, s, { name: 'stem' }));
    this.stemBn = this.addChild('stemBn', new BatchNorm2d(config.stem, 'stemBn'));
    this.stages = this.addChild(
      'stages',
      new Stages(
        'resnet',
        config.stem,
        config.stages,
        (cin, spec, name) => new BasicBlock(cin, spec, s, name, makeConv),
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

  elasticLayers(): string[] {
    return ['stem', ...this.stages.elasticLayers((n) => [`${n}.conv1`, `${n}.conv2`])];
  }

  private plan(sub: SubModel): Plan {
    return {
      stem: layerUnits(sub, 'stem', this.config.stem),
      blocks: this.stages.plan(sub, (spec, n) => ({
        mid: layerUnits(sub, `${n}.conv1`, spec.mid),
        out: layerUnits(sub, `${n}.conv2`, spec.out),
      })),
    };
  }

  validate(sub: SubModel): void {
    checkLayerNames(sub, this.elasticLayers(), 'resnet');
    this.plan(sub);
  }

  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor2D {
    const p = this.plan(sub);
    const h = tf.relu(
      this.stemBn.forward(
        this.stem.forward(checkImageInput(x, this.config.inChannels, 'resnet'), p.stem),
        ctx,
      ),
    );
    return this.head.forward(globalAvgPool(this.stages.forward(h, p.blocks, ctx))) as tf.Tensor2D;
  }

  cost(sub: SubModel): Cost {
    const p = this.plan(sub);
    const c = zeroCost();
    const size = this.config.imageSize;
    const bn = (ch: number): Cost => ({ params: 2 * ch, flops: 4 * ch * size * size });
    addCost(c, Conv2d.cost(this.config.inChannels, p.stem, 3, size, size), bn(p.stem));
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
