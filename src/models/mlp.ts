/** A sorted multi-layer perceptron: elastic depth (hidden layers run) and width (per layer). */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { posInt, posInts } from '../schema/fields.js';
import { Module, ModuleList } from '../nn/module.js';
import { Linear } from '../nn/linear.js';
import { activate, type Activation } from '../nn/functional.js';
import { seedStream } from '../nn/init.js';
import type { SubModel } from '../sorted/submodel.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { checkDepth, checkLayerNames, layerUnits, type SortedModel } from './model.js';

const ACTIVATIONS = ['relu', 'relu6', 'gelu', 'silu', 'none'] as const satisfies readonly Activation[];

export const MlpConfigSchema = z
  .object({
    inputs: posInt,
    /** Hidden widths, one per layer. */
    hidden: posInts,
    classes: posInt,
    activation: z.enum(ACTIVATIONS).optional(),
  })
  .strict();
export type MlpConfig = z.infer<typeof MlpConfigSchema>;

export class Mlp extends Module implements SortedModel<MlpConfig> {
  readonly family = 'mlp';
  readonly input = 'image';
  readonly layers: ModuleList<Linear>;
  /** Shared head: every depth exits through it, sliced to the last active width. */
  readonly head: Linear;

  constructor(
    readonly config: MlpConfig,
    seed = 1,
  ) {
    super();
    if (config.hidden.length === 0) throw new Error('mlp: needs at least one hidden layer');
    const s = seedStream(seed);
    const dims = [config.inputs, ...config.hidden];
    this.layers = this.addChild(
      'layers',
      new ModuleList(config.hidden.map((h, i) => new Linear(dims[i], h, s, { name: `layers.${i}` }))),
    );
    this.head = this.addChild(
      'head',
      new Linear(Math.max(...config.hidden), config.classes, s, { name: 'head' }),
    );
  }

  private widths(sub: SubModel): number[] {
    const depth = checkDepth(sub.depth, 1, this.config.hidden.length, 'mlp');
    return this.config.hidden.slice(0, depth).map((h, i) => layerUnits(sub, `layers.${i}`, h));
  }

  validate(sub: SubModel): void {
    checkLayerNames(
      sub,
      this.config.hidden.map((_, i) => `layers.${i}`),
      'mlp',
    );
    this.widths(sub);
  }

  forward(x: tf.Tensor, sub: SubModel): tf.Tensor2D {
    return this.forwardExits(x, sub, [this.widths(sub).length])[0];
  }

  /** The head after each layer count in `depths` (ascending), from one pass through the layers. */
  forwardExits(x: tf.Tensor, sub: SubModel, depths: readonly number[]): tf.Tensor2D[] {
    const last = depths[depths.length - 1];
    for (const [i, d] of depths.entries()) {
      checkDepth(d, 1, this.config.hidden.length, 'mlp');
      if (i > 0 && d <= depths[i - 1]) throw new Error(`mlp: exit depths [${depths}] must ascend`);
    }
    // A layer's width does not depend on the depth, so depth d's layers are the deepest one's first d.
    const widths = this.widths({ ...sub, depth: last });
    const exits: tf.Tensor2D[] = [];
    let h = x.rank === 2 ? x : tf.reshape(x, [x.shape[0], -1]); // [B, inputs]
    for (const [i, w] of widths.entries()) {
      h = activate(this.layers.items[i].forward(h, w), this.config.activation ?? 'relu');
      if (depths.includes(i + 1)) exits.push(this.head.forward(h) as tf.Tensor2D);
    }
    return exits;
  }

  cost(sub: SubModel): Cost {
    const widths = this.widths(sub);
    const c = zeroCost();
    let inF = this.config.inputs;
    for (const w of widths) {
      addCost(c, Linear.cost(inF, w));
      inF = w;
    }
    return addCost(c, Linear.cost(inF, this.config.classes));
  }

  shrink(sub: SubModel): MlpConfig {
    return { ...this.config, hidden: this.widths(sub) };
  }
}
