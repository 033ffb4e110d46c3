/**
 * A small sorted MobileNetV2: elastic depth (blocks, round-robin over stages), width (output
 * channels) and expansion (hidden channels of each inverted residual).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from '../nn/module.js';
import { Conv2d } from '../nn/conv2d.js';
import { BatchNorm2d } from '../nn/batchnorm.js';
import { InvertedResidual, type InvertedResidualSpec } from '../nn/inverted_residual.js';
import { Linear } from '../nn/linear.js';
import { globalAvgPool } from '../nn/functional.js';
import { seedStream } from '../nn/init.js';
import type { SubModel } from '../sorted/submodel.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { checkImageInput, checkLayerNames, layerUnits, type SortedModel } from './model.js';
import { Stages, type ActiveBlock } from './staged.js';

export interface MobileNetV2Config {
  inChannels: number;
  imageSize: number;
  classes: number;
  stem: number;
  stages: InvertedResidualSpec[][];
  /** Channels of the last 1×1 conv before pooling. */
  last: number;
}

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

type BlockWidthsOf = { hidden: number; out: number };

interface Plan {
  stem: number;
  last: number;
  blocks: ActiveBlock<BlockWidthsOf>[];
}

export class MobileNetV2 extends Module implements SortedModel<MobileNetV2Config> {
  readonly family = 'mobilenetv2';
  readonly input = 'image';
  readonly stem: Conv2d;
  readonly stemBn: BatchNorm2d;
  readonly stages: Stages<InvertedResidualSpec, BlockWidthsOf, InvertedResidual>;
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
    this.stages = this.addChild(
      'stages',
      new Stages(
        'mobilenetv2',
        config.stem,
        config.stages,
        (cin, spec, name) => new InvertedResidual(cin, spec, s, name),
      ),
    );
    this.lastConv = this.addChild(
      'lastConv',
      new Conv2d(this.stages.outChannels, config.last, 1, s, { name: 'lastConv' }),
    );
    this.lastBn = this.addChild('lastBn', new BatchNorm2d(config.last, 'lastBn'));
    this.head = this.addChild('head', new Linear(config.last, config.classes, s, { name: 'head' }));
  }

  get maxDepth(): number {
    return this.stages.maxDepth;
  }

  elasticLayers(): string[] {
    return ['stem', 'lastConv', ...this.stages.elasticLayers((n) => [`${n}.expand`, `${n}.project`])];
  }

  private plan(sub: SubModel): Plan {
    const width = sub.width ?? 1;
    return {
      stem: layerUnits(sub, 'stem', this.config.stem),
      last: layerUnits(sub, 'lastConv', this.config.last),
      blocks: this.stages.plan(sub, (spec, n) => ({
        hidden: layerUnits(sub, `${n}.expand`, spec.hidden, width * (sub.expand ?? 1)),
        out: layerUnits(sub, `${n}.project`, spec.out, width),
      })),
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
    h = this.stages.forward(h, p.blocks, ctx);
    h = tf.relu6(this.lastBn.forward(this.lastConv.forward(h, p.last), ctx));
    return this.head.forward(globalAvgPool(h)) as tf.Tensor2D;
  }

  cost(sub: SubModel): Cost {
    const p = this.plan(sub);
    const c = zeroCost();
    const size = this.config.imageSize;
    const bn = (ch: number, at: number): Cost => ({ params: 2 * ch, flops: 4 * ch * at * at });
    addCost(c, Conv2d.cost(this.config.inChannels, p.stem, 3, size, size), bn(p.stem, size));
    const body = this.stages.cost(p.stem, p.blocks, size);
    const [cin, out] = [body.channels, body.size];
    addCost(c, body.cost, Conv2d.cost(cin, p.last, 1, out, out), bn(p.last, out));
    return addCost(c, { params: 0, flops: p.last * out * out }, Linear.cost(p.last, this.config.classes));
  }

  shrink(sub: SubModel): MobileNetV2Config {
    const p = this.plan(sub);
    const stages = this.stages.shrink(p.blocks, (spec, w) => ({ ...spec, hidden: w.hidden, out: w.out }));
    return { ...this.config, stem: p.stem, last: p.last, stages };
  }
}
