/**
 * A small pre-LN transformer encoder classifier whose FFNs are dense, MoE (Shazeer top-k) or
 * PAD-MoE: the config field `ffn` switches them. Pooling is the mean over non-padding tokens.
 * The MoE layers' aux losses are summed into the output's `auxLoss`.
 *
 * ```ts
 * const model = new MoETransformer({ ...MOE_TRANSFORMER_DEFAULTS, vocab: 257, ffnMode: 'moe' });
 * const { logits, auxLoss } = model.forward(ids, { mode: 'train', key: 'full', seed });
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
import type { DynamicContext, DynamicModel, DynamicOutput } from '../dynamic/context.js';

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

/** Pre-LN block: x + attn(ln1(x)), then x + ffn(ln2(x)); returns the FFN's aux loss (0 if dense). */
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

  forward(x: tf.Tensor3D, ctx: ForwardContext): { h: tf.Tensor3D; auxLoss: tf.Scalar } {
    const a = dropout(this.attn.forward(this.ln1.forward(x) as tf.Tensor3D, ctx), this.dropoutRate, ctx);
    const h = tf.add(x, a) as tf.Tensor3D; // [B, T, e]
    const z = this.ln2.forward(h);
    let f: tf.Tensor;
    let auxLoss: tf.Scalar;
    if (this.ffn instanceof FeedForward) {
      f = this.ffn.forward(z);
      auxLoss = tf.scalar(0);
    } else {
      ({ y: f, auxLoss } = this.ffn.forward(z, ctx));
    }
    return { h: tf.add(h, dropout(f, this.dropoutRate, ctx)) as tf.Tensor3D, auxLoss };
  }
}

export class MoETransformer extends Module implements DynamicModel {
  readonly family = 'moe-transformer';
  readonly input = 'tokens';
  readonly config: MoETransformerConfig;
  readonly tokens: Embedding;
  readonly positions: Embedding;
  readonly blocks: ModuleList<MoEBlock>;
  readonly lnFinal: LayerNorm;
  readonly head: Linear;

  /** `replace(name)` may supply an FFN instead of the configured one (`deploy()`); names are `blocks.{i}.ffn`. */
  constructor(config: MoETransformerConfig, seed = 1, replace?: (name: string) => FfnLayer | undefined) {
    super();
    const c = checkMoETransformerConfig(config);
    this.config = c;
    const s = seedStream(seed);
    const makeFfn = (name: string): FfnLayer => {
      const given = replace?.(name);
      if (given) return given;
      const opts = {
        experts: c.experts,
        topK: c.topK,
        hidden: c.ffn,
        activation: 'gelu' as const,
        noisyGating: c.noisyGating,
        capacityFactor: c.capacityFactor,
        name,
      };
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

  /** ids: int32 [B, T] → logits [B, classes] and the summed aux loss. */
  forward(x: tf.Tensor, ctx: DynamicContext): DynamicOutput {
    const c = this.config;
    if (x.rank !== 2 || x.dtype !== 'int32')
      throw new Error(`moe-transformer: input must be int32 [B, T], got ${x.dtype} [${x.shape.join(', ')}]`);
    const [B, T] = x.shape;
    if (T > c.maxLen) throw new Error(`moe-transformer: sequence length ${T} > maxLen ${c.maxLen}`);
    let h = tf.add(this.tokens.forward(x), this.positions.forward(tf.range(0, T, 1, 'int32'))) as tf.Tensor3D; // [B, T, e]
    let auxLoss: tf.Scalar = tf.scalar(0);
    for (const block of this.blocks.items) {
      const out = block.forward(h, ctx);
      h = out.h;
      auxLoss = tf.add(auxLoss, out.auxLoss);
    }
    h = this.lnFinal.forward(h) as tf.Tensor3D;
    const mask = tf.reshape(tf.cast(tf.notEqual(x, c.padId), 'float32'), [B, T, 1]);
    const pooled = tf.div(tf.sum(tf.mul(h, mask), 1), tf.maximum(tf.sum(mask, 1), 1)); // [B, e]
    return { logits: this.head.forward(pooled) as tf.Tensor2D, auxLoss };
  }

  /** Deployed parameters; FLOPs per sequence of maxLen tokens (MoE: ideal top-k dispatch). */
  cost(): Cost {
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
    const ffns = new Map(this.blocks.items.map((b, i) => [`blocks.${i}.ffn`, b.ffn]));
    const deployed = new MoETransformer(this.config, 1, (name) => {
      const f = ffns.get(name);
      return f instanceof PadMoE ? new CompactPadMoE(f) : undefined;
    });
    copyMatchingState(this, deployed);
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
