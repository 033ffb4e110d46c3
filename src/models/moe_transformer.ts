/**
 * The transformer encoder classifier of transformer.ts whose FFNs are dense, MoE (Shazeer top-k) or
 * PAD-MoE: the config field `ffnMode` picks the blocks' FFN factory. Pooling is the mean over
 * non-padding tokens. Elastic depth and heads (MoE experts keep their width; a dense FFN is
 * elastic as in the plain transformer). The MoE layers put their aux losses in `ctx.aux`, the one
 * channel the trainer reads. A deployed model carries `compact`: per PAD-MoE layer, its dynamic
 * element counts.
 *
 * ```ts
 * const model = new MoETransformer({ ...MOE_TRANSFORMER_DEFAULTS, vocab: 257, ffnMode: 'moe' });
 * const aux = new AuxLosses();
 * const logits = model.forward(ids, FULL, subModelContext(FULL, 'train', { seed, aux })); // + aux.total()
 * ```
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { count, oneOf, posInt, positive, unitInterval } from '../schema/fields.js';
import { FeedForward } from '../nn/ffn.js';
import { denseFfn, type FfnFactory } from '../nn/transformer_block.js';
import { MoE } from '../dynamic/moe.js';
import { PadMoE, LAMBDA_MODES } from '../dynamic/partial.js';
import { CompactPadMoE, copyMatchingState } from '../dynamic/compact.js';
import type { SubModel } from '../sorted/submodel.js';
import { Transformer, TransformerConfigSchema } from './transformer.js';

export type FfnMode = 'dense' | 'moe' | 'pad-moe';
export const FFN_MODES: readonly FfnMode[] = ['dense', 'moe', 'pad-moe'];

export const MoETransformerConfigSchema = TransformerConfigSchema.extend({
  task: z.literal('classify'),
  classes: posInt,
  /** Token id that pads sequences (excluded from pooling). */
  padId: count,
  dropout: unitInterval,
  ffnMode: oneOf(FFN_MODES),
  /** E. */
  experts: posInt,
  /** k. */
  topK: posInt,
  /** Shazeer's noisy gating in training. */
  noisyGating: z.boolean(),
  /** Optional per-expert capacity factor. */
  capacityFactor: positive.optional(),
  /** Which PAD scale factors are learned (ffn 'pad-moe' only). */
  lambdaMode: oneOf(LAMBDA_MODES),
  /** Deployed models only: per PAD-MoE layer name, the dynamic element count of each expert layer. */
  compact: z.record(z.array(count)).optional(),
});
export type MoETransformerConfig = z.infer<typeof MoETransformerConfigSchema>;

/** What a MoE transformer config may leave out: the task (always 'classify') and headDim (dim / heads). */
export type MoETransformerOptions = Omit<MoETransformerConfig, 'task' | 'headDim' | 'arch'> &
  Partial<Pick<MoETransformerConfig, 'task' | 'headDim' | 'arch'>>;

export const MOE_TRANSFORMER_DEFAULTS: MoETransformerOptions = {
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

/** The full config (task 'classify', arch 'gpt', headDim = dim / heads unless given), checked. */
export function moeTransformerConfig(o: MoETransformerOptions): MoETransformerConfig {
  if (!FFN_MODES.includes(o.ffnMode))
    throw new Error(`moe-transformer: ffn '${o.ffnMode}' is not one of ${FFN_MODES.join(', ')}`);
  if (!LAMBDA_MODES.includes(o.lambdaMode)) {
    throw new Error(`moe-transformer: lambdaMode '${o.lambdaMode}' is not one of ${LAMBDA_MODES.join(', ')}`);
  }
  if ((o.task ?? 'classify') !== 'classify' || (o.arch ?? 'gpt') !== 'gpt')
    throw new Error(`moe-transformer: is a 'gpt' classifier; got task '${o.task}', arch '${o.arch}'`);
  if (typeof o.heads !== 'number' && o.headDim === undefined)
    throw new Error('moe-transformer: per-block heads need an explicit headDim');
  if (o.headDim === undefined && o.dim % (o.heads as number) !== 0)
    throw new Error(`moe-transformer: dim ${o.dim} is not divisible by ${o.heads as number} heads`);
  if (o.classes < 2) throw new Error(`moe-transformer: classes ${o.classes} must be ≥ 2`);
  return { ...o, task: 'classify', arch: 'gpt', headDim: o.headDim ?? o.dim / (o.heads as number) };
}

/** The blocks' FFNs a config asks for (compact PAD-MoE where `compact` names them). */
function moeFfns(c: MoETransformerConfig): FfnFactory {
  const dense = denseFfn('gelu');
  return (dim, hidden, name, seed) => {
    const router = { noisyGating: c.noisyGating, capacityFactor: c.capacityFactor };
    const compact = c.compact?.[name];
    if (compact) {
      return new CompactPadMoE({
        experts: c.experts,
        topK: c.topK,
        inFeatures: dim,
        outFeatures: dim,
        hidden,
        activation: 'gelu',
        router: { ...router, auxWeight: 0.01 },
        dynamic: compact,
        name,
      });
    }
    const opts = { ...router, experts: c.experts, topK: c.topK, hidden, activation: 'gelu' as const, name };
    switch (c.ffnMode) {
      case 'dense':
        return dense(dim, hidden, name, seed);
      case 'moe':
        return new MoE(dim, dim, seed, opts);
      case 'pad-moe':
        return new PadMoE(dim, dim, seed, { ...opts, lambdaMode: c.lambdaMode });
    }
  };
}

export class MoETransformer extends Transformer<MoETransformerConfig> {
  override readonly family = 'moe-transformer';

  /** FFN layers are named `blocks.{i}.ffn`; `config.compact` makes the named ones compact PAD-MoE. */
  constructor(config: MoETransformerOptions, seed = 1) {
    const c = moeTransformerConfig(config);
    super(c, seed, moeFfns(c));
    const ffns = new Set(this.blocks.items.map((_, i) => `blocks.${i}.ffn`));
    for (const name of Object.keys(c.compact ?? {})) {
      if (!ffns.has(name)) throw new Error(`moe-transformer: compact layer '${name}' is not a block FFN`);
    }
  }

  /** As the transformer's, but MoE experts have one width: no `ffn`, `embed` or per-block FFN budgets. */
  override validate(sub: SubModel): void {
    super.validate(sub);
    if (this.config.ffnMode === 'dense' && !this.config.compact) return;
    const ffnLayer = Object.keys(sub.layers ?? {}).find((k) => k.endsWith('.ffn'));
    const fixed = sub.ffn !== undefined ? 'ffn' : sub.embed !== undefined ? 'embed' : ffnLayer;
    if (fixed) {
      throw new Error(
        `moe-transformer: ffn '${this.config.ffnMode}' experts have a fixed width, so '${fixed}' cannot be ` +
          'budgeted; elastic dimensions are depth, heads and blocks.i.attn',
      );
    }
  }

  /** The deployed copy: PAD-MoE layers become CompactPadMoE; the rest is copied. */
  deploy(): MoETransformer {
    const pads = new Map(this.namedModules().filter((e): e is [string, PadMoE] => e[1] instanceof PadMoE));
    if (pads.size === 0)
      throw new Error(`moe-transformer: ffn '${this.config.ffnMode}' has no PAD-MoE layers to compact`);
    const compact: Record<string, number[]> = {};
    for (const [name, f] of pads) compact[name] = f.masks.map((m) => tf.tidy(() => tf.sum(m).dataSync()[0]));
    const deployed = new MoETransformer({ ...this.config, compact });
    copyMatchingState(this, deployed);
    for (const [name, m] of deployed.namedModules()) if (m instanceof CompactPadMoE) m.load(pads.get(name)!);
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
