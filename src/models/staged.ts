/**
 * The staged body of the convolutional families (ResNet, PAD ResNet, MobileNetV2): stages of
 * blocks named `stages.{s}.{b}`, run to a depth budget in the round-robin order of
 * depth_order.ts. A model holds one as its `stages` child (composition) and adds its own stem,
 * tail and head; the body plans, runs, costs and shrinks the blocks a sub-model uses.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ModuleList, type ForwardContext, type Module } from '../nn/module.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import type { SubModel } from '../sorted/submodel.js';
import { checkDepth } from './model.js';
import { blocksPerStage } from './depth_order.js';

/** The widths a sub-model gives one block; `out` is its output channels. */
export interface BlockWidths {
  out: number;
}

/** A block of a stage, elastic in the widths `W` a sub-model picks. */
export interface StageBlock<W extends BlockWidths> extends Module {
  forward(x: tf.Tensor4D, widths: W, ctx: ForwardContext): tf.Tensor4D;
  /** Parameters and FLOPs per sample with `cin` input channels on a size×size input; the output size too. */
  cost(cin: number, widths: W, size: number): { cost: Cost; size: number };
}

/** A block a sub-model runs: its stage `s`, its index `b` in the stage, and its widths. */
export type ActiveBlock<W extends BlockWidths> = { s: number; b: number } & W;

/** What every block spec of a stage states: its full output channels. */
export interface BlockSpec {
  out: number;
}

export class Stages<
  S extends BlockSpec,
  W extends BlockWidths,
  B extends StageBlock<W> = StageBlock<W>,
> extends ModuleList<ModuleList<B>> {
  /** The channels the body's output has in the full model. */
  readonly outChannels: number;

  /** `make` builds block `name` (`stages.{s}.{b}`) from its input channels and spec. */
  constructor(
    readonly family: string,
    inChannels: number,
    readonly specs: readonly (readonly S[])[],
    make: (cin: number, spec: S, name: string) => B,
  ) {
    if (specs.length === 0 || specs.some((st) => st.length === 0)) {
      throw new Error(`${family}: every stage needs at least one block`);
    }
    let cin = inChannels;
    super(
      specs.map(
        (stage, si) =>
          new ModuleList(
            stage.map((spec, bi) => {
              const block = make(cin, spec, `stages.${si}.${bi}`);
              cin = spec.out;
              return block;
            }),
          ),
      ),
    );
    this.outChannels = Math.max(...specs[specs.length - 1].map((b) => b.out));
  }

  /** Blocks of the full model (the largest depth). */
  get maxDepth(): number {
    return this.specs.reduce((a, st) => a + st.length, 0);
  }

  /** Every block's elastic layer names (`layers(name, spec)` for block `stages.{s}.{b}`), in order. */
  elasticLayers(layers: (name: string, spec: S) => string[]): string[] {
    return this.specs.flatMap((st, si) => st.flatMap((spec, bi) => layers(`stages.${si}.${bi}`, spec)));
  }

  /**
   * The blocks `sub` runs, in order: the first `sub.depth` of the round-robin order (at least
   * one per stage), each with the widths `widths` gives its spec and name.
   */
  plan(sub: SubModel, widths: (spec: S, name: string) => W): ActiveBlock<W>[] {
    const depth = checkDepth(sub.depth, this.specs.length, this.maxDepth, this.family);
    const perStage = blocksPerStage(
      this.specs.map((st) => st.length),
      depth,
    );
    const blocks: ActiveBlock<W>[] = [];
    perStage.forEach((n, s) => {
      for (let b = 0; b < n; b++) blocks.push({ s, b, ...widths(this.specs[s][b], `stages.${s}.${b}`) });
    });
    return blocks;
  }

  forward(x: tf.Tensor4D, blocks: readonly ActiveBlock<W>[], ctx: ForwardContext): tf.Tensor4D {
    let h = x;
    for (const blk of blocks) h = this.items[blk.s].items[blk.b].forward(h, blk, ctx);
    return h;
  }

  /** Cost of the planned blocks from `cin` channels at size×size; the output channels and size too. */
  cost(
    cin: number,
    blocks: readonly ActiveBlock<W>[],
    size: number,
  ): { cost: Cost; channels: number; size: number } {
    const c = zeroCost();
    for (const blk of blocks) {
      const r = this.items[blk.s].items[blk.b].cost(cin, blk, size);
      addCost(c, r.cost);
      size = r.size;
      cin = blk.out;
    }
    return { cost: c, channels: cin, size };
  }

  /** The stages of a standalone model equal to the planned blocks (`resize`: a spec at given widths). */
  shrink(blocks: readonly ActiveBlock<W>[], resize: (spec: S, widths: ActiveBlock<W>) => S): S[][] {
    const stages: S[][] = this.specs.map(() => []);
    for (const blk of blocks) stages[blk.s].push(resize(this.specs[blk.s][blk.b], blk));
    return stages;
  }
}

/** The image and stem of a staged model's config builder (ResNet, PAD ResNet, MobileNetV2). */
export interface StagedImageShape {
  inChannels: number;
  imageSize: number;
  classes: number;
  stem: number;
}

/** The leading fields of a staged model's config, in the order configs (and checkpoints) have them. */
export const imageShapeFields = (o: StagedImageShape): StagedImageShape => ({
  inChannels: o.inChannels,
  imageSize: o.imageSize,
  classes: o.classes,
  stem: o.stem,
});
