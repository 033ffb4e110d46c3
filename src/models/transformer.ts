/**
 * A sorted transformer: a causal language model (tied or untied head) or an encoder classifier
 * (mean-pooled over non-padding tokens). Elastic depth (layers), heads, FFN width and embedding
 * dim; the final norm and the head are shared by every depth (SortedNet / Sorted LLaMA).
 * Two architectures: 'gpt' (learned positions, LayerNorm, GELU, biases) and 'llama' (rotary
 * positions, RMSNorm, SwiGLU, no biases), whose context is bounded by maxLen only. The options
 * a Hugging Face checkpoint needs (src/run/hf_import.ts): grouped-query attention (`kvHeads`),
 * an untied head, the norms' epsilon, Qwen2's q/k/v biases and Llama 3's rotary scaling.
 *
 * Per-block widths (Mix'n'Match, MatFormer / Gemma 3n): a sub-model may give block i its own FFN
 * hidden units (`blocks.i.ffn`) and heads (`blocks.i.attn`) in `sub.layers`; the standalone
 * model of such a sub-model has per-block `ffn` / `heads` lists in its config.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { count, posInt, posInts, positive, unitInterval } from '../schema/fields.js';
import { Module, ModuleList, type ForwardContext } from '../nn/module.js';
import { Embedding } from '../nn/embedding.js';
import { LayerNorm, RMSNorm } from '../nn/norm.js';
import type { KeyValue } from '../nn/attention.js';
import { Linear } from '../nn/linear.js';
import { TransformerBlock, denseFfn, type BlockWidths, type FfnFactory } from '../nn/transformer_block.js';
import { seedStream } from '../nn/init.js';
import type { SubModel } from '../sorted/submodel.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { checkDepth, checkLayerNames, layerUnits, type SortedModel } from './model.js';
import { checkUnits, unitsFor } from '../sorted/slice.js';
import { prefixMatMul } from '../engine/ops/prefix_mat_mul.js';

export const TransformerConfigSchema = z
  .object({
    task: z.enum(['lm', 'classify']),
    vocab: posInt,
    dim: posInt,
    /** Attention heads of every block, or one count per block (a non-uniform extracted sub-model). */
    heads: z.union([posInt, posInts]),
    headDim: posInt,
    /** FFN hidden units of every block, or one count per block (a non-uniform extracted sub-model). */
    ffn: z.union([posInt, posInts]),
    layers: posInt,
    maxLen: posInt,
    /** Classes for 'classify'; ignored for 'lm'. */
    classes: posInt.optional(),
    dropout: unitInterval.optional(),
    /** Token id that pads sequences (excluded from pooling); 'classify' only. */
    padId: count.optional(),
    /** 'gpt' (default) or 'llama' (RMSNorm, rotary positions, SwiGLU FFN, no biases). */
    arch: z.enum(['gpt', 'llama']).optional(),
    /** Rotary base for 'llama' (default 10000; Hugging Face `rope_theta`). */
    ropeBase: positive.optional(),
    /** Llama 3 scaling of the rotary frequencies (Hugging Face `rope_scaling`, rope_type llama3). */
    ropeScaling: z
      .object({
        type: z.literal('llama3'),
        factor: positive,
        lowFreqFactor: positive,
        highFreqFactor: positive,
        originalMaxPositions: positive,
      })
      .strict()
      .optional(),
    /**
     * Key/value heads of every block (grouped-query attention), or one count per block; each must
     * divide the block's heads. Default: as many as heads (multi-head attention).
     */
    kvHeads: z.union([posInt, posInts]).optional(),
    /** LM head tied to the token embedding (default true); false: a separate `lmHead` [vocab, dim]. */
    tiedHead: z.boolean().optional(),
    /** Epsilon of every norm (default 1e-5 for LayerNorm ('gpt'), 1e-6 for RMSNorm ('llama')). */
    normEps: positive.optional(),
    /**
     * Attention biases of 'llama' (its FFN has none): 'none' (default), 'qkv' (Qwen2) or 'all'
     * (Llama's `attention_bias`). 'gpt' always has every bias.
     */
    attnBias: z.enum(['none', 'qkv', 'all']).optional(),
  })
  .strict();
export type TransformerConfig = z.infer<typeof TransformerConfigSchema>;

export const ATTN_BIAS = ['none', 'qkv', 'all'] as const;

/** A per-block setting as one value per block, checked: positive integers, one per layer. */
export function perBlock(v: number | number[], layers: number, what: string): number[] {
  const list = Array.isArray(v) ? v : new Array<number>(layers).fill(v);
  if (list.length !== layers)
    throw new Error(
      `transformer: ${what} lists ${list.length} values for ${layers} layers; give one per layer`,
    );
  for (const [i, n] of list.entries()) {
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`transformer: ${what} ${n} of block ${i} must be a positive integer`);
  }
  return list;
}

/** Per-block values as the config stores them: one number when they are all equal. */
const compactList = (v: number[]): number | number[] => (v.every((x) => x === v[0]) ? v[0] : v);

interface Plan {
  depth: number;
  embed: number;
  /** Active heads and FFN units of every block (the first `depth` run). */
  blocks: BlockWidths[];
}

export class Transformer<C extends TransformerConfig = TransformerConfig>
  extends Module
  implements SortedModel<C>
{
  readonly family: string = 'transformer';
  readonly input = 'tokens';
  readonly tokens: Embedding;
  /** Learned positions ('gpt'); null for 'llama', whose attention rotates q and k instead. */
  readonly positions: Embedding | null;
  readonly blocks: ModuleList<TransformerBlock>;
  readonly lnFinal: LayerNorm | RMSNorm;
  /** The classifier's head ('classify'); null for an LM. */
  readonly head: Linear | null;
  /** An LM's untied output matrix [vocab, dim] (tiedHead false); null when tied to the embedding. */
  readonly lmHead: Linear | null;
  /** Full heads and FFN units per block. */
  private readonly full: BlockWidths[];
  /** Names a sub-model's `layers` may use: `blocks.i.attn` (heads), `blocks.i.ffn` (hidden units). */
  readonly layerNames: readonly string[];

  /** `makeFfn` makes the blocks' FFNs (dense by default: GELU for 'gpt', SwiGLU for 'llama'). */
  constructor(
    readonly config: C,
    seed = 1,
    makeFfn?: FfnFactory,
  ) {
    super();
    const s = seedStream(seed);
    const c = config;
    const heads = perBlock(c.heads, c.layers, 'heads');
    const ffn = perBlock(c.ffn, c.layers, 'ffn');
    const kvHeads = perBlock(c.kvHeads ?? heads, c.layers, 'kvHeads');
    this.full = heads.map((h, i) => ({ heads: h, ffn: ffn[i] }));
    this.layerNames = heads.flatMap((_, i) => [`blocks.${i}.attn`, `blocks.${i}.ffn`]);
    this.tokens = this.addChild('tokens', new Embedding(c.vocab, c.dim, s, 'tokens'));
    const llama = c.arch === 'llama';
    if (c.arch !== undefined && c.arch !== 'gpt' && !llama)
      throw new Error(`transformer: arch '${c.arch as string}' is not 'gpt' or 'llama'`);
    const attnBias = c.attnBias ?? 'none';
    if (!ATTN_BIAS.includes(attnBias))
      throw new Error(`transformer: attnBias '${attnBias as string}' is not one of ${ATTN_BIAS.join(', ')}`);
    if (!llama && c.attnBias !== undefined && c.attnBias !== 'all')
      throw new Error("transformer: arch 'gpt' has every bias; attnBias applies to arch 'llama'");
    if (!llama && c.ropeScaling) throw new Error("transformer: ropeScaling needs arch 'llama'");
    if (c.normEps !== undefined && !(c.normEps > 0))
      throw new Error(`transformer: normEps ${c.normEps} must be positive`);
    if (c.tiedHead === false && c.task !== 'lm')
      throw new Error('transformer: tiedHead applies to task lm only');
    this.positions = llama
      ? null
      : this.addChild('positions', new Embedding(c.maxLen, c.dim, s, 'positions'));
    this.blocks = this.addChild(
      'blocks',
      new ModuleList(
        Array.from(
          { length: c.layers },
          (_, i) =>
            new TransformerBlock(
              c.dim,
              heads[i],
              c.headDim,
              ffn[i],
              s,
              {
                causal: c.task === 'lm',
                dropout: c.dropout,
                name: `blocks.${i}`,
                kvHeads: kvHeads[i],
                normEps: c.normEps,
                ...(llama
                  ? {
                      norm: 'rms',
                      ropeBase: c.ropeBase ?? 10000,
                      ropeScaling: c.ropeScaling,
                      bias: attnBias !== 'none',
                      outBias: attnBias === 'all',
                    }
                  : {}),
              },
              makeFfn ?? (llama ? denseFfn('swiglu', false) : denseFfn('gelu')),
            ),
        ),
      ),
    );
    this.lnFinal = this.addChild(
      'lnFinal',
      llama ? new RMSNorm(c.dim, 'lnFinal', c.normEps) : new LayerNorm(c.dim, 'lnFinal', c.normEps),
    );
    this.lmHead =
      c.task === 'lm' && c.tiedHead === false
        ? this.addChild('lmHead', new Linear(c.dim, c.vocab, s, { name: 'lmHead', bias: false }))
        : null;
    if (c.task === 'classify') {
      if (!c.classes || c.classes < 2) throw new Error('transformer: task classify needs classes ≥ 2');
      this.head = this.addChild('head', new Linear(c.dim, c.classes, s, { name: 'head' }));
    } else {
      this.head = null; // tied to the token embedding
    }
  }

  /** Widths of `sub`: a per-block override (`blocks.i.attn` / `blocks.i.ffn`), else the uniform budget. */
  protected plan(sub: SubModel): Plan {
    const c = this.config;
    return {
      depth: checkDepth(sub.depth, 1, c.layers, 'transformer'),
      embed: unitsFor(sub.embed ?? 1, c.dim, 1, 'transformer embed'),
      blocks: this.full.map((f, i) => {
        const attn = `blocks.${i}.attn`;
        const heads = checkUnits(sub.layers?.[attn] ?? sub.heads ?? f.heads, f.heads, attn, 'heads');
        this.blocks.items[i].attn.activeKvHeads(heads); // whole key/value groups only
        return {
          heads,
          ffn: layerUnits(sub, `blocks.${i}.ffn`, f.ffn, sub.ffn ?? 1),
        };
      }),
    };
  }

  validate(sub: SubModel): void {
    checkLayerNames(sub, this.layerNames, 'transformer');
    if (sub.width !== undefined)
      throw new Error("transformer: use 'heads', 'ffn' and 'embed' instead of 'width'");
    this.plan(sub);
  }

  /** Token (+ learned position) embeddings of the active width for positions start..start+T−1: [B, T, e]. */
  embed(ids: tf.Tensor2D, sub: SubModel, start = 0): tf.Tensor3D {
    const e = this.plan(sub).embed;
    const [, T] = ids.shape;
    if (start + T > this.config.maxLen) {
      throw new Error(
        `transformer: ${start + T} positions exceed the context length maxLen ${this.config.maxLen}`,
      );
    }
    const tokens = this.tokens.forward(ids, e) as tf.Tensor3D;
    if (!this.positions) return tokens;
    const pos = this.positions.forward(tf.range(start, start + T, 1, 'int32'), e); // [T, e]
    return tf.add(tokens, pos) as tf.Tensor3D;
  }

  /** Block i applied to h at the sub-model's heads and FFN width. */
  block(i: number, h: tf.Tensor3D, sub: SubModel, ctx: ForwardContext): tf.Tensor3D {
    return this.blocks.items[i].forward(h, this.plan(sub).blocks[i], ctx);
  }

  /**
   * Block i for decoding with a KV cache: h [B, n, e] holds positions start..start+n−1, `past`
   * is block i's cache of positions 0..start−1 (at the sub-model's widths). Returns the block's
   * output and its cache extended by the n positions. `keyMask` (additive, [B, 1, 1, start + n])
   * hides padded keys of a left-padded batch.
   */
  blockStep(
    i: number,
    h: tf.Tensor3D,
    sub: SubModel,
    past: KeyValue | null,
    start: number,
    keyMask?: tf.Tensor,
  ): { y: tf.Tensor3D; kv: KeyValue } {
    if (this.config.task !== 'lm') throw new Error('transformer: KV-cached decoding needs task lm');
    return this.blocks.items[i].step(h, this.plan(sub).blocks[i], past, start, keyMask);
  }

  /** LM logits through the SHARED final norm and head (tied or not), from any depth's hidden states [..., e]. */
  lmLogits(h: tf.Tensor): tf.Tensor {
    if (this.head) throw new Error('transformer: lmLogits needs task lm');
    const e = h.shape[h.rank - 1];
    const table = (this.lmHead ?? this.tokens).weight as tf.Tensor2D; // [vocab, dim], its first e columns
    // Rows of a decoding step come 2-D: no reshapes (each is a kernel call per step).
    const flat = this.lnFinal.forward(h.rank === 2 ? h : tf.reshape(h, [-1, e]));
    const logits = prefixMatMul(flat as tf.Tensor2D, table, this.config.vocab, 'lm head');
    return h.rank === 2 ? logits : tf.reshape(logits, [...h.shape.slice(0, -1), this.config.vocab]);
  }

  /** LM: logits [B, T, vocab]; classify: logits [B, classes]. */
  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor {
    return this.forwardExits(x, sub, [this.plan(sub).depth], ctx)[0];
  }

  /** Every exit of `depths` through the shared final norm and head, from one pass through the blocks. */
  forwardExits(x: tf.Tensor, sub: SubModel, depths: readonly number[], ctx: ForwardContext): tf.Tensor[] {
    if (x.rank !== 2 || x.dtype !== 'int32') {
      throw new Error(`transformer: input must be int32 [B, T], got ${x.dtype} [${x.shape.join(', ')}]`);
    }
    const last = depths[depths.length - 1];
    for (const [i, d] of depths.entries()) {
      checkDepth(d, 1, this.config.layers, 'transformer');
      if (i > 0 && d <= depths[i - 1]) throw new Error(`transformer: exit depths [${depths}] must ascend`);
    }
    const ids = x as tf.Tensor2D;
    const exits: tf.Tensor[] = [];
    const widths = this.plan(sub).blocks;
    let h = this.embed(ids, sub);
    for (let i = 0; i < last; i++) {
      h = this.blocks.items[i].forward(h, widths[i], ctx);
      if (depths.includes(i + 1)) exits.push(this.output(ids, h));
    }
    return exits;
  }

  /** The shared final norm and head on hidden states h [B, T, e]. */
  private output(ids: tf.Tensor2D, h: tf.Tensor3D): tf.Tensor {
    if (!this.head) return this.lmLogits(h);
    const [B, T] = ids.shape;
    const hn = this.lnFinal.forward(h);
    const mask = tf.reshape(tf.cast(tf.notEqual(ids, this.config.padId ?? -1), 'float32'), [B, T, 1]);
    const pooled = tf.div(tf.sum(tf.mul(hn, mask), 1), tf.maximum(tf.sum(mask, 1), 1)); // [B, e]
    return this.head.forward(pooled);
  }

  /** Parameters, and FLOPs per sequence of maxLen tokens, block by block at each block's widths. */
  cost(sub: SubModel): Cost {
    const p = this.plan(sub);
    const c = this.config;
    const T = c.maxLen;
    const llama = c.arch === 'llama';
    const total = zeroCost();
    const tables = 1 + (this.lmHead ? 1 : 0);
    addCost(total, { params: (tables * c.vocab + (llama ? 0 : c.maxLen)) * p.embed, flops: 0 });
    for (let i = 0; i < p.depth; i++) addCost(total, this.blocks.items[i].cost(p.embed, p.blocks[i], T));
    addCost(total, { params: (llama ? 1 : 2) * p.embed, flops: 0 }); // the final norm
    if (c.task === 'classify') addCost(total, Linear.cost(p.embed, c.classes ?? 2));
    else addCost(total, { params: 0, flops: 2 * p.embed * c.vocab });
    // Everything above is per token; a sample is a sequence of maxLen tokens.
    return { params: total.params, flops: total.flops * T };
  }

  /** The config of the standalone model of `sub`: per-block lists where the blocks differ. */
  shrink(sub: SubModel): C {
    const p = this.plan(sub);
    const blocks = p.blocks.slice(0, p.depth);
    return {
      ...this.config,
      layers: p.depth,
      heads: compactList(blocks.map((b) => b.heads)),
      ...(this.config.kvHeads === undefined
        ? {}
        : {
            kvHeads: compactList(blocks.map((b, i) => this.blocks.items[i].attn.activeKvHeads(b.heads))),
          }),
      ffn: compactList(blocks.map((b) => b.ffn)),
      dim: p.embed,
    };
  }
}
