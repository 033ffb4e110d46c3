/**
 * A small sorted MobileNetV2: elastic depth (blocks, round-robin over stages), width (output
 * channels) and expansion (hidden channels of each inverted residual). With `stemStride: 2`,
 * `padding: 'symmetric'` and blocks of expansion 1 without an expand conv (`unitExpansion:
 * false` in mobilenetV2Config) it is torchvision's mobilenet_v2 layer for layer (torchvision.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { oneOf, posInt } from '../schema/fields.js';
import { Module, type ForwardContext } from '../nn/module.js';
import { Conv2d, convOutSize, convPadding, PADDING_MODES, type PaddingMode } from '../nn/conv2d.js';
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
import { checkImageInput, checkLayerNames, layerUnits, type SortedModel } from './model.js';
import { imageShapeFields, Stages, type ActiveBlock, type StagedImageShape } from './staged.js';
import { convBn } from '../nn/conv_bn.js';

export const MobileNetV2ConfigSchema = z
  .object({
    inChannels: posInt,
    imageSize: posInt,
    classes: posInt,
    stem: posInt,
    stages: z.array(z.array(InvertedResidualSpecSchema)),
    /** Channels of the last 1×1 conv before pooling. */
    last: posInt,
    /** Stride of the 3×3 stem conv (default 1; 2 in torchvision's ImageNet layout). */
    stemStride: posInt.optional(),
    /** 'same' (default, TensorFlow's) or 'symmetric' (PyTorch's (k − 1) / 2 per side). */
    padding: oneOf<PaddingMode>(PADDING_MODES).optional(),
  })
  .strict();
export type MobileNetV2Config = z.infer<typeof MobileNetV2ConfigSchema>;

/** mobilenetV2Config's shorthand for `stages`: [expansion, channels, blocks, stride] rows. */
export const MOBILENETV2_SHORTHAND = { rows: z.array(z.tuple([posInt, posInt, posInt, posInt])) };

/**
 * Stages from (expansion t, channels c, blocks n, stride s) rows, as in the paper's Table 2.
 * `unitExpansion: false` leaves out the 1×1 expand conv of blocks with t = 1 (as torchvision does).
 */
export function mobilenetV2Config(
  o: StagedImageShape & {
    rows: [t: number, c: number, n: number, s: number][];
    last: number;
    stemStride?: number;
    padding?: PaddingMode;
    unitExpansion?: boolean;
  },
): MobileNetV2Config {
  let cin = o.stem;
  const stages = o.rows.map(([t, c, n, s]) =>
    Array.from({ length: n }, (_, b) => {
      const stride = b === 0 ? s : 1;
      const spec: InvertedResidualSpec = {
        hidden: cin * t,
        out: c,
        stride,
        residual: stride === 1 && cin === c,
      };
      if (t === 1 && o.unitExpansion === false) spec.expand = false;
      cin = c;
      return spec;
    }),
  );
  return {
    ...imageShapeFields(o),
    stages,
    last: o.last,
    // Only when given: configs (and checkpoints) of the default layout stay as they were.
    ...(o.stemStride !== undefined && { stemStride: o.stemStride }),
    ...(o.padding !== undefined && { padding: o.padding }),
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
    const padding = config.padding ?? 'same';
    if (!PADDING_MODES.includes(padding))
      throw new Error(`mobilenetv2: padding '${padding}' is not one of ${PADDING_MODES.join(', ')}`);
    const stride = config.stemStride ?? 1;
    if (!Number.isInteger(stride) || stride < 1)
      throw new Error(`mobilenetv2: stemStride ${stride} must be a positive integer`);
    this.stem = this.addChild(
      'stem',
      new Conv2d(config.inChannels, config.stem, 3, s, {
        name: 'stem',
        stride,
        padding: convPadding(padding, 3),
      }),
    );
    this.stemBn = this.addChild('stemBn', new BatchNorm2d(config.stem, 'stemBn'));
    this.stages = this.addChild(
      'stages',
      new Stages(
        'mobilenetv2',
        config.stem,
        config.stages,
        (cin, spec, name) => new InvertedResidual(cin, spec, s, name, padding),
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
    return [
      'stem',
      'lastConv',
      ...this.stages.elasticLayers((n, spec) =>
        spec.expand === false ? [`${n}.project`] : [`${n}.expand`, `${n}.project`],
      ),
    ];
  }

  private plan(sub: SubModel): Plan {
    const width = sub.width ?? 1;
    const stem = layerUnits(sub, 'stem', this.config.stem);
    const blocks = this.stages.plan(sub, (spec, n) => ({
      hidden:
        spec.expand === false ? 0 : layerUnits(sub, `${n}.expand`, spec.hidden, width * (sub.expand ?? 1)),
      out: layerUnits(sub, `${n}.project`, spec.out, width),
    }));
    // A block without expansion runs its depthwise conv on its input: hidden = the width before it.
    blocks.forEach((blk, i) => {
      if (this.config.stages[blk.s][blk.b].expand === false) blk.hidden = i === 0 ? stem : blocks[i - 1].out;
    });
    return { stem, last: layerUnits(sub, 'lastConv', this.config.last), blocks };
  }

  validate(sub: SubModel): void {
    checkLayerNames(sub, this.elasticLayers(), 'mobilenetv2');
    this.plan(sub);
  }

  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor2D {
    const p = this.plan(sub);
    const image = checkImageInput(x, this.config.inChannels, 'mobilenetv2');
    let h = convBn(this.stem, this.stemBn, image, p.stem, ctx, 'relu6');
    h = this.stages.forward(h, p.blocks, ctx);
    h = convBn(this.lastConv, this.lastBn, h, p.last, ctx, 'relu6');
    return this.head.forward(globalAvgPool(h)) as tf.Tensor2D;
  }

  cost(sub: SubModel): Cost {
    const p = this.plan(sub);
    const c = zeroCost();
    const size = convOutSize(this.config.imageSize, 3, this.config.stemStride ?? 1, 'same');
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
