/**
 * A small pre-LN transformer encoder classifier whose FFNs are dense, MoE (Shazeer top-k) or
 * PAD-MoE: the config field `ffnMode` switches them. Pooling is the mean over non-padding tokens.
 * A sorted model with no elastic dimension (its grid is the full model only). The MoE layers put
 * their aux losses in `ctx.aux`, the one channel the trainer reads.
 *
 * ```ts
 * const model = new MoETransformer({ ...MOE_TRANSFORMER_DEFAULTS, vocab: 257, ffnMode: 'moe' });
 * const aux = new AuxLosses();
 * const logits = model.forward(ids, FULL, { mode: 'train', key: 'full', seed, aux }); // + aux.total()
 * ```
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList, type ForwardContext } from '../nn/module.js';
import { Embedding } from '../nn/embedding.js';
import { LayerNorm } from '../nn/norm.js';
import { Linear } from '../nn/linear.js';
import { MultiHeadAttention } from '../nn/attention.js';
import { FeedForward } from '../nn/ffn.js';
import { dropout } from '../nn/functional.js';
import { seedStream } from '../nn/init.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { MoE } from '../dynamic/moe.js';
import { PadMoE, LAMBDA_MODES, type LambdaMode } from '../dynamic/partial.js';
import { CompactPadMoE, copyMatchingState } from '../dynamic/compact.js';
import { subModelId, type SubModel } from '../sorted/submodel.js';
import type { SortedModel } from './model.js';

export type FfnMode = 'dense' | 'moe' | 'pad-moe';
export const FFN_MODES: readonly FfnMode[] = ['dense', 'moe', 'pad-moe'];

export interface MoETransformerConfig {
  vocab: number;
  dim: number;
  heads: number;
  /** Hidden width of the FFN (of each expert). */
  ffn: number;
  layers: number;
  maxLen: number;
  classes: number;
  /** Token id that pads sequences (excluded from pooling). */
  padId: number;
  dropout: number;
  ffnMode: FfnMode;
  /** E. */
  experts: number;
  /** k. */
  topK: number;
  /** Shazeer's noisy gating in training. */
  noisyGating: boolean;
  /** Optional per-expert capacity factor. */
  capacityFactor?: number;
  /** Which PAD scale factors are learned (ffn 'pad-moe' only). */
  lambdaMode: LambdaMode;
  /** Deployed models only: per PAD-MoE layer name, the dynamic element count of each expert layer. */
  compact?: Record<string, number[]>;
}

export const MOE_TRANSFORMER_DEFAULTS: MoETransformerConfig = {
  vocab: 257,
  dim: 64,
  heads: 4,
  ffn: 128,
  layers: 2,
  maxLen: 128,
  classes: 2,
  padId: 0,
  dropout: 0,
  ffnMode: 'dense',
  experts: 8,
  topK: 2,
  noisyGating: true,
  lambdaMode: 'both',
};

export function checkMoETransformerConfig(c: MoETransformerConfig): MoETransformerConfig {
  if (!FFN_MODES.includes(c.ffnMode))
    throw new Error(`moe-transformer: ffn '${c.ffnMode}' is not one of ${FFN_MODES.join(', ')}`);
  if (!LAMBDA_MODES.includes(c.lambdaMode)) {
    throw new Error(`moe-transformer: lambdaMode '${c.lambdaMode}' is not one of ${LAMBDA_MODES.join(', ')}`);
  }
  if (c.dim % c.heads !== 0)
    throw new Error(`moe-transformer: dim ${c.dim} is not divisible by ${c.heads} heads`);
  if (c.classes < 2) throw new Error(`moe-transformer: classes ${c.classes} must be ≥ 2`);
  return c;
}

export type FfnLayer = FeedForward | MoE | PadMoE | CompactPadMoE;

/** Pre-LN block: x + attn(ln1(x)), then x + ffn(ln2(x)); an MoE FFN puts its aux loss in ctx.aux. */
export class MoEBlock extends Module {
  readonly ln1: LayerNorm;
  readonly attn: MultiHeadAttention;
  readonly ln2: LayerNorm;
  constructor(
    dim: number,
    heads: number,
    readonly ffn: FfnLayer,
    readonly dropoutRate: number,
    seed: () => number,
    name: string,
  ) {
    super();
    this.ln1 = this.addChild('ln1', new LayerNorm(dim, `${name}.ln1`));
    this.attn = this.addChild(
      'attn',
      new MultiHeadAttention(dim, heads, seed, { dropout: dropoutRate, name: `${name}.attn` }),
    );
    this.ln2 = this.addChild('ln2', new LayerNorm(dim, `${name}.ln2`));
    this.addChild('ffn', ffn);
  }

  forward(x: tf.Tensor3D, ctx: ForwardContext): tf.Tensor3D {
    const a = dropout(this.attn.forward(this.ln1.forward(x) as tf.Tensor3D, ctx), this.dropoutRate, ctx);
    const h = tf.add(x, a) as tf.Tensor3D; // [B, T, e]
    const z = this.ln2.forward(h);
    const f = this.ffn instanceof FeedForward ? this.ffn.forward(z) : this.ffn.forward(z, ctx).y;
    return tf.add(h, dropout(f, this.dropoutRate, ctx)) as tf.Tensor3D;
  }
}

export class MoETransformer extends Module implements SortedModel<MoETransformerConfig> {
  readonly family = 'moe-transformer';
  readonly input = 'tokens';
  readonly config: MoETransformerConfig;
  readonly tokens: Embedding;
  readonly positions: Embedding;
  readonly blocks: ModuleList<MoEBlock>;
  readonly lnFinal: LayerNorm;
  readonly head: Linear;

  /** FFN layers are named `blocks.{i}.ffn`; `config.compact` makes the named ones compact PAD-MoE. */
  constructor(config: MoETransformerConfig, seed = 1) {
    super();
    const c = checkMoETransformerConfig(config);
    this.config = c;
    const s = seedStream(seed);
    const makeFfn = (name: string): FfnLayer => {
      const opts = {
        experts: c.experts,
        topK: c.topK,
        hidden: c.ffn,
        activation: 'gelu' as const,
        noisyGating: c.noisyGating,
        capacityFactor: c.capacityFactor,
        name,
      };
      const compact = c.compact?.[name];
      if (compact) {
        return new CompactPadMoE({
          experts: c.experts,
          topK: c.topK,
          inFeatures: c.dim,
          outFeatures: c.dim,
          hidden: c.ffn,
          activation: 'gelu',
          router: { noisyGating: c.noisyGating, capacityFactor: c.capacityFactor, auxWeight: 0.01 },
          dynamic: compact,
          name,
        });
      }
      switch (c.ffnMode) {
        case 'dense':
          return new FeedForward(c.dim, c.ffn, s, 'gelu', name);
        case 'moe':
          return new MoE(c.dim, c.dim, s, opts);
        case 'pad-moe':
          return new PadMoE(c.dim, c.dim, s, { ...opts, lambdaMode: c.lambdaMode });
      }
    };
    this.tokens = this.addChild('tokens', new Embedding(c.vocab, c.dim, s, 'tokens'));
    this.positions = this.addChild('positions', new Embedding(c.maxLen, c.dim, s, 'positions'));
    this.blocks = this.addChild(
      'blocks',
      new ModuleList(
        Array.from(
          { length: c.layers },
          (_, i) => new MoEBlock(c.dim, c.heads, makeFfn(`blocks.${i}.ffn`), c.dropout, s, `blocks.${i}`),
        ),
      ),
    );
    this.lnFinal = this.addChild('lnFinal', new LayerNorm(c.dim, 'lnFinal'));
    this.head = this.addChild('head', new Linear(c.dim, c.classes, s, { name: 'head' }));
  }

  /** No elastic dimension: the full model is the only sub-model. */
  validate(sub: SubModel): void {
    if (subModelId(sub) !== 'full')
      throw new Error(
        `moe-transformer: has no elastic dimensions; sub-model '${subModelId(sub)}' must be full (grid {})`,
      );
  }

  shrink(sub: SubModel): MoETransformerConfig {
    this.validate(sub);
    return this.config;
  }

  /** ids: int32 [B, T] → logits [B, classes]; MoE aux losses go to ctx.aux. */
  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor2D {
    this.validate(sub);
    const c = this.config;
    if (x.rank !== 2 || x.dtype !== 'int32')
      throw new Error(`moe-transformer: input must be int32 [B, T], got ${x.dtype} [${x.shape.join(', ')}]`);
    const [B, T] = x.shape;
    if (T > c.maxLen) throw new Error(`moe-transformer: sequence length ${T} > maxLen ${c.maxLen}`);
    let h = tf.add(this.tokens.forward(x), this.positions.forward(tf.range(0, T, 1, 'int32'))) as tf.Tensor3D; // [B, T, e]
    for (const block of this.blocks.items) h = block.forward(h, ctx);
    h = this.lnFinal.forward(h) as tf.Tensor3D;
    const mask = tf.reshape(tf.cast(tf.notEqual(x, c.padId), 'float32'), [B, T, 1]);
    const pooled = tf.div(tf.sum(tf.mul(h, mask), 1), tf.maximum(tf.sum(mask, 1), 1)); // [B, e]
    return this.head.forward(pooled) as tf.Tensor2D;
  }

  /** Deployed parameters; FLOPs per sequence of maxLen tokens (MoE: ideal top-k dispatch). */
  cost(sub: SubModel = {}): Cost {
    this.validate(sub);
    const c = this.config;
    const perToken = zeroCost();
    for (const block of this.blocks.items) {
      addCost(perToken, { params: 4 * c.dim, flops: 0 });
      for (let i = 0; i < 4; i++) addCost(perToken, Linear.cost(c.dim, c.dim));
      addCost(perToken, { params: 0, flops: 4 * c.maxLen * c.dim });
      const f = block.ffn;
      addCost(
        perToken,
        f instanceof FeedForward ? addCost(Linear.cost(c.dim, c.ffn), Linear.cost(c.ffn, c.dim)) : f.cost(),
      );
    }
    addCost(perToken, { params: 2 * c.dim, flops: 0 }, Linear.cost(c.dim, c.classes));
    return { params: perToken.params + (c.vocab + c.maxLen) * c.dim, flops: perToken.flops * c.maxLen };
  }

  /** The deployed copy: PAD-MoE layers become CompactPadMoE; the rest is copied. */
  deploy(): MoETransformer {
    const pads = new Map<string, PadMoE>();
    this.blocks.items.forEach((b, i) => b.ffn instanceof PadMoE && pads.set(`blocks.${i}.ffn`, b.ffn));
    if (pads.size === 0)
      throw new Error(`moe-transformer: ffn '${this.config.ffnMode}' has no PAD-MoE layers to compact`);
    const compact: Record<string, number[]> = {};
    for (const [name, f] of pads) compact[name] = f.masks.map((m) => tf.tidy(() => tf.sum(m).dataSync()[0]));
    const deployed = new MoETransformer({ ...this.config, compact });
    copyMatchingState(this, deployed);
    deployed.blocks.items.forEach((b, i) => {
      if (b.ffn instanceof CompactPadMoE) b.ffn.load(pads.get(`blocks.${i}.ffn`)!);
    });
    return deployed;
  }

  /** Sparse upcycling: copies a dense model's weights, each dense FFN into every expert (and W_s). */
  upcycleFrom(dense: MoETransformer): void {
    if (dense.config.ffnMode !== 'dense')
      throw new Error(`upcycleFrom: source must have ffn 'dense', got '${dense.config.ffnMode}'`);
    copyMatchingState(dense, this);
    this.blocks.items.forEach((b, i) => {
      const src = dense.blocks.items[i].ffn as FeedForward;
      if (b.ffn instanceof MoE || b.ffn instanceof PadMoE) b.ffn.upcycle(src);
    });
  }
}
