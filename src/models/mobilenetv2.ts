/**
 * A small sorted MobileNetV2: elastic depth (blocks, round-robin over stages), width (output
 * channels) and expansion (hidden channels of each inverted residual).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { posInt } from '../schema/fields.js';
import { Module, ModuleList, type ForwardContext } from '../nn/module.js';
import { Conv2d, convOutSize, DepthwiseConv2d } from '../nn/conv2d.js';
import { BatchNorm2d } from '../nn/batchnorm.js';
import {
  InvertedResidual,
  InvertedResidualSpecSchema,
  type InvertedResidualSpec,
} from '../nn/inverted_residual.js';
import { Linear } from '../nn/linear.js';
import { globalAvgPool } from '../nn/functional.js';
import { seedStream } from '../nn/init.js';
import type { SubModel } from '../sorted/submodel.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { checkDepth, checkImageInput, checkLayerNames, layerUnits, type SortedModel } from './model.js';
import { blocksPerStage } from './depth_order.js';

export const MobileNetV2ConfigSchema = z
  .object({
    inChannels: posInt,
    imageSize: posInt,
    classes: posInt,
    stem: posInt,
    stages: z.array(z.array(InvertedResidualSpecSchema)),
    /** Channels of the last 1×1 conv before pooling. */
    last: posInt,
  })
  .strict();
export type MobileNetV2Config = z.infer<typeof MobileNetV2ConfigSchema>;

/** mobilenetV2Config's shorthand for `stages`: [expansion, channels, blocks, stride] rows. */
export const MOBILENETV2_SHORTHAND = { rows: z.array(z.tuple([posInt, posInt, posInt, posInt])) };

/** Stages from (expansion t, channels c, blocks n, stride s) rows, as in the paper's Table 2. */
export function mobilenetV2Config(o: {
  inChannels: number;
  imageSize: number;
  classes: number;
  stem: number;
  rows: [t: number, c: number, n: number, s: number][];
  last: number;
}): MobileNetV2Config {
  let cin = o.stem;
  const stages = o.rows.map(([t, c, n, s]) =>
    Array.from({ length: n }, (_, b) => {
      const stride = b === 0 ? s : 1;
      const spec = { hidden: cin * t, out: c, stride, residual: stride === 1 && cin === c };
      cin = c;
      return spec;
    }),
  );
  return {
    inChannels: o.inChannels,
    imageSize: o.imageSize,
    classes: o.classes,
    stem: o.stem,
    stages,
    last: o.last,
  };
}

interface Plan {
  stem: number;
  last: number;
  blocks: { s: number; b: number; hidden: number; out: number }[];
}

export class MobileNetV2 extends Module implements SortedModel<MobileNetV2Config> {
  readonly family = 'mobilenetv2';
  readonly input = 'image';
  readonly stem: Conv2d;
  readonly stemBn: BatchNorm2d;
  readonly stages: ModuleList<ModuleList<InvertedResidual>>;
  readonly lastConv: Conv2d;
  readonly lastBn: BatchNorm2d;
  readonly head: Linear;

  constructor(
    readonly config: MobileNetV2Config,
    seed = 1,
  ) {
    super();
    const s = seedStream(seed);
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
                const blk = new InvertedResidual(cin, spec, s, `stages.${si}.${bi}`);
                cin = spec.out;
                return blk;
              }),
            ),
        ),
      ),
    );
    const lastIn = Math.max(...config.stages[config.stages.length - 1].map((b) => b.out));
    this.lastConv = this.addChild('lastConv', new Conv2d(lastIn, config.last, 1, s, { name: 'lastConv' }));
    this.lastBn = this.addChild('lastBn', new BatchNorm2d(config.last, 'lastBn'));
    this.head = this.addChild('head', new Linear(config.last, config.classes, s, { name: 'head' }));
  }

  get maxDepth(): number {
    return this.config.stages.reduce((a, st) => a + st.length, 0);
  }

  elasticLayers(): string[] {
    const names = ['stem', 'lastConv'];
    this.config.stages.forEach((st, si) =>
      st.forEach((_, bi) => names.push(`stages.${si}.${bi}.expand`, `stages.${si}.${bi}.project`)),
    );
    return names;
  }

  private plan(sub: SubModel): Plan {
    const depth = checkDepth(sub.depth, this.config.stages.length, this.maxDepth, 'mobilenetv2');
    const perStage = blocksPerStage(
      this.config.stages.map((st) => st.length),
      depth,
    );
    const width = sub.width ?? 1;
    const blocks: Plan['blocks'] = [];
    perStage.forEach((n, s) => {
      for (let b = 0; b < n; b++) {
        const spec = this.config.stages[s][b];
        blocks.push({
          s,
          b,
          hidden: layerUnits(sub, `stages.${s}.${b}.expand`, spec.hidden, width * (sub.expand ?? 1)),
          out: layerUnits(sub, `stages.${s}.${b}.project`, spec.out, width),
        });
      }
    });
    return {
      stem: layerUnits(sub, 'stem', this.config.stem),
      last: layerUnits(sub, 'lastConv', this.config.last),
      blocks,
    };
  }

  validate(sub: SubModel): void {
    checkLayerNames(sub, this.elasticLayers(), 'mobilenetv2');
    this.plan(sub);
  }

  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor2D {
    const p = this.plan(sub);
    let h = tf.relu6(
      this.stemBn.forward(
        this.stem.forward(checkImageInput(x, this.config.inChannels, 'mobilenetv2'), p.stem),
        ctx,
      ),
    );
    for (const blk of p.blocks) h = this.stages.items[blk.s].items[blk.b].forward(h, blk, ctx);
    h = tf.relu6(this.lastBn.forward(this.lastConv.forward(h, p.last), ctx));
    return this.head.forward(globalAvgPool(h)) as tf.Tensor2D;
  }

  cost(sub: SubModel): Cost {
    const p = this.plan(sub);
    const c = zeroCost();
    let size = this.config.imageSize;
    const bn = (ch: number): Cost => ({ params: 2 * ch, flops: 4 * ch * size * size });
    addCost(c, Conv2d.cost(this.config.inChannels, p.stem, 3, size, size), bn(p.stem));
    let cin = p.stem;
    for (const blk of p.blocks) {
      addCost(c, Conv2d.cost(cin, blk.hidden, 1, size, size), bn(blk.hidden));
      size = convOutSize(size, 3, this.config.stages[blk.s][blk.b].stride, 'same');
      addCost(c, DepthwiseConv2d.cost(blk.hidden, 3, size, size), bn(blk.hidden));
      addCost(c, Conv2d.cost(blk.hidden, blk.out, 1, size, size), bn(blk.out));
      cin = blk.out;
    }
    addCost(c, Conv2d.cost(cin, p.last, 1, size, size), bn(p.last));
    return addCost(c, { params: 0, flops: p.last * size * size }, Linear.cost(p.last, this.config.classes));
  }

  shrink(sub: SubModel): MobileNetV2Config {
    const p = this.plan(sub);
    const stages: InvertedResidualSpec[][] = this.config.stages.map(() => []);
    for (const blk of p.blocks)
      stages[blk.s].push({ ...this.config.stages[blk.s][blk.b], hidden: blk.hidden, out: blk.out });
    return { ...this.config, stem: p.stem, last: p.last, stages };
  }
}
