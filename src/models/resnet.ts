/**
 * A sorted CIFAR-style ResNet (basic blocks): elastic depth (blocks, see depth_order.ts) and
 * width per layer; one shared global-pool + linear head.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { posInt, posInts } from '../schema/fields.js';
import { Module, ModuleList, type ForwardContext } from '../nn/module.js';
import { Conv2d } from '../nn/conv2d.js';
import { BatchNorm2d } from '../nn/batchnorm.js';
import {
  BasicBlock,
  BasicBlockSpecSchema,
  staticConv,
  type BasicBlockSpec,
  type ConvFactory,
} from '../nn/basic_block.js';
import { Linear } from '../nn/linear.js';
import { globalAvgPool } from '../nn/functional.js';
import { seedStream } from '../nn/init.js';
import type { SubModel } from '../sorted/submodel.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { checkDepth, checkImageInput, checkLayerNames, layerUnits, type SortedModel } from './model.js';
import { blocksPerStage } from './depth_order.js';

export const ResNetConfigSchema = z
  .object({
    inChannels: posInt,
    imageSize: posInt,
    classes: posInt,
    stem: posInt,
    stages: z.array(z.array(BasicBlockSpecSchema)),
  })
  .strict();
export type ResNetConfig = z.infer<typeof ResNetConfigSchema>;

/** resnetConfig's shorthand for `stages`: the width and the number of blocks of each stage. */
export const RESNET_SHORTHAND = { widths: posInts, blocks: posInts };

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

interface Plan {
  stem: number;
  blocks: { s: number; b: number; mid: number; out: number }[];
}

export class ResNet<C extends ResNetConfig = ResNetConfig> extends Module implements SortedModel<C> {
  readonly family: string = 'resnet';
  readonly input = 'image';
  readonly stem: Conv2d;
  readonly stemBn: BatchNorm2d;
  readonly stages: ModuleList<ModuleList<BasicBlock>>;
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
    let cin = config.stem;
    this.stages = this.addChild(
      'stages',
      new ModuleList(
        config.stages.map(
          (stage, si) =>
            new ModuleList(
              stage.map((spec, bi) => {
                const block = new BasicBlock(cin, spec, s, `stages.${si}.${bi}`, makeConv);
                cin = spec.out;
                return block;
              }),
            ),
        ),
      ),
    );
    const last = config.stages[config.stages.length - 1];
    this.head = this.addChild(
      'head',
      new Linear(Math.max(...last.map((b) => b.out)), config.classes, s, { name: 'head' }),
    );
  }

  get maxDepth(): number {
    return this.config.stages.reduce((a, st) => a + st.length, 0);
  }

  elasticLayers(): string[] {
    const names = ['stem'];
    this.config.stages.forEach((st, si) =>
      st.forEach((_, bi) => names.push(`stages.${si}.${bi}.conv1`, `stages.${si}.${bi}.conv2`)),
    );
    return names;
  }

  private plan(sub: SubModel): Plan {
    const depth = checkDepth(sub.depth, this.config.stages.length, this.maxDepth, 'resnet');
    const perStage = blocksPerStage(
      this.config.stages.map((st) => st.length),
      depth,
    );
    const blocks: Plan['blocks'] = [];
    perStage.forEach((n, s) => {
      for (let b = 0; b < n; b++) {
        const spec = this.config.stages[s][b];
        blocks.push({
          s,
          b,
          mid: layerUnits(sub, `stages.${s}.${b}.conv1`, spec.mid),
          out: layerUnits(sub, `stages.${s}.${b}.conv2`, spec.out),
        });
      }
    });
    return { stem: layerUnits(sub, 'stem', this.config.stem), blocks };
  }

  validate(sub: SubModel): void {
    checkLayerNames(sub, this.elasticLayers(), 'resnet');
    this.plan(sub);
  }

  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor2D {
    const p = this.plan(sub);
    let h = tf.relu(
      this.stemBn.forward(
        this.stem.forward(checkImageInput(x, this.config.inChannels, 'resnet'), p.stem),
        ctx,
      ),
    );
    for (const blk of p.blocks) h = this.stages.items[blk.s].items[blk.b].forward(h, blk, ctx);
    return this.head.forward(globalAvgPool(h)) as tf.Tensor2D;
  }

  cost(sub: SubModel): Cost {
    const p = this.plan(sub);
    const c = zeroCost();
    let size = this.config.imageSize;
    let cin = p.stem;
    const bn = (ch: number): Cost => ({ params: 2 * ch, flops: 4 * ch * size * size });
    addCost(c, Conv2d.cost(this.config.inChannels, p.stem, 3, size, size), bn(p.stem));
    for (const blk of p.blocks) {
      const r = this.stages.items[blk.s].items[blk.b].cost(cin, blk, size);
      addCost(c, r.cost);
      size = r.size;
      cin = blk.out;
    }
    return addCost(c, { params: 0, flops: cin * size * size }, Linear.cost(cin, this.config.classes));
  }

  shrink(sub: SubModel): C {
    const p = this.plan(sub);
    const stages: BasicBlockSpec[][] = this.config.stages.map(() => []);
    for (const blk of p.blocks)
      stages[blk.s].push({ ...this.config.stages[blk.s][blk.b], mid: blk.mid, out: blk.out });
    return { ...this.config, stem: p.stem, stages };
  }
}
