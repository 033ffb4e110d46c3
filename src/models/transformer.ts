/**
 * A sorted transformer: a causal language model (tied embedding head) or an encoder classifier
 * (mean-pooled over non-padding tokens). Elastic depth (layers), heads, FFN width and embedding
 * dim; the final norm and the head are shared by every depth (SortedNet / Sorted LLaMA).
 * Two architectures: 'gpt' (learned positions, LayerNorm, GELU, biases) and 'llama' (rotary
 * positions, RMSNorm, SwiGLU, no biases), whose context is bounded by maxLen only.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList, type ForwardContext } from '../nn/module.js';
import { Embedding } from '../nn/embedding.js';
import { LayerNorm, RMSNorm } from '../nn/norm.js';
import type { KeyValue } from '../nn/attention.js';
import { Linear } from '../nn/linear.js';
import { TransformerBlock } from '../nn/transformer_block.js';
import { seedStream } from '../nn/init.js';
import type { SubModel } from '../sorted/submodel.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';
import { checkDepth, checkLayerNames, type SortedModel } from './model.js';
import { checkUnits, prefix, unitsFor } from '../sorted/slice.js';

export interface TransformerConfig {
  task: 'lm' | 'classify';
  vocab: number;
  dim: number;
  heads: number;
  headDim: number;
  ffn: number;
  layers: number;
  maxLen: number;
  /** Classes for 'classify'; ignored for 'lm'. */
  classes?: number;
  dropout?: number;
  /** Token id that pads sequences (excluded from pooling); 'classify' only. */
  padId?: number;
  /** 'gpt' (default) or 'llama' (RMSNorm, rotary positions, SwiGLU FFN, no biases). */
  arch?: 'gpt' | 'llama';
  /** Rotary base for 'llama' (default 10000). */
  ropeBase?: number;
}

interface Plan {
  depth: number;
  heads: number;
  ffn: number;
  embed: number;
}

export class Transformer extends Module implements SortedModel<TransformerConfig> {
  readonly family = 'transformer';
  readonly input = 'tokens';
  readonly tokens: Embedding;
  /** Learned positions ('gpt'); null for 'llama', whose attention rotates q and k instead. */
  readonly positions: Embedding | null;
  readonly blocks: ModuleList<TransformerBlock>;
  readonly lnFinal: LayerNorm | RMSNorm;
  readonly head: Linear | null;

  constructor(
    readonly config: TransformerConfig,
    seed = 1,
  ) {
    super();
    const s = seedStream(seed);
    const c = config;
    this.tokens = this.addChild('tokens', new Embedding(c.vocab, c.dim, s, 'tokens'));
    const llama = c.arch === 'llama';
    if (c.arch !== undefined && c.arch !== 'gpt' && !llama)
      throw new Error(`transformer: arch '${c.arch as string}' is not 'gpt' or 'llama'`);
    this.positions = llama
      ? null
      : this.addChild('positions', new Embedding(c.maxLen, c.dim, s, 'positions'));
    this.blocks = this.addChild(
      'blocks',
      new ModuleList(
        Array.from(
          { length: c.layers },
          (_, i) =>
            new TransformerBlock(c.dim, c.heads, c.headDim, c.ffn, s, {
              causal: c.task === 'lm',
              dropout: c.dropout,
              name: `blocks.${i}`,
              ...(llama
                ? { norm: 'rms', activation: 'swiglu', ropeBase: c.ropeBase ?? 10000, bias: false }
                : {}),
            }),
        ),
      ),
    );
    this.lnFinal = this.addChild(
      'lnFinal',
      llama ? new RMSNorm(c.dim, 'lnFinal') : new LayerNorm(c.dim, 'lnFinal'),
    );
    if (c.task === 'classify') {
      if (!c.classes || c.classes < 2) throw new Error('transformer: task classify needs classes ≥ 2');
      this.head = this.addChild('head', new Linear(c.dim, c.classes, s, { name: 'head' }));
    } else {
      this.head = null; // tied to the token embedding
    }
  }

  private plan(sub: SubModel): Plan {
    const c = this.config;
    return {
      depth: checkDepth(sub.depth, 1, c.layers, 'transformer'),
      heads: checkUnits(sub.heads ?? c.heads, c.heads, 'transformer', 'heads'),
      ffn: unitsFor(sub.ffn ?? 1, c.ffn, 1, 'transformer ffn'),
      embed: unitsFor(sub.embed ?? 1, c.dim, 1, 'transformer embed'),
    };
  }

  validate(sub: SubModel): void {
    checkLayerNames(sub, [], 'transformer');
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
    return this.blocks.items[i].forward(h, this.plan(sub), ctx);
  }

  /**
   * Block i for decoding with a KV cache: h [B, n, e] holds positions start..start+n−1, `past`
   * is block i's cache of positions 0..start−1 (at the sub-model's widths). Returns the block's
   * output and its cache extended by the n positions.
   */
  blockStep(
    i: number,
    h: tf.Tensor3D,
    sub: SubModel,
    past: KeyValue | null,
    start: number,
  ): { y: tf.Tensor3D; kv: KeyValue } {
    if (this.config.task !== 'lm') throw new Error('transformer: KV-cached decoding needs task lm');
    return this.blocks.items[i].step(h, this.plan(sub), past, start);
  }

  /** LM logits through the SHARED final norm and tied head, from any depth's hidden states [..., e]. */
  lmLogits(h: tf.Tensor): tf.Tensor {
    if (this.head) throw new Error('transformer: lmLogits needs task lm');
    const e = h.shape[h.rank - 1];
    const table = prefix(this.tokens.weight, [-1, e], 'tokens'); // [vocab, e]
    const flat = tf.reshape(this.lnFinal.forward(h), [-1, e]);
    return tf.reshape(tf.matMul(flat, table, false, true), [...h.shape.slice(0, -1), this.config.vocab]);
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
    let h = this.embed(ids, sub);
    for (let i = 0; i < last; i++) {
      h = this.block(i, h, sub, ctx);
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

  cost(sub: SubModel): Cost {
    const p = this.plan(sub);
    const c = this.config;
    const T = c.maxLen;
    const inner = p.heads * c.headDim;
    const llama = c.arch === 'llama';
    const bias = !llama;
    const norm = { params: (llama ? 1 : 2) * p.embed, flops: 0 };
    const total = zeroCost();
    addCost(total, { params: (c.vocab + (llama ? 0 : c.maxLen)) * p.embed, flops: 0 });
    for (let i = 0; i < p.depth; i++) {
      addCost(
        total,
        norm,
        norm,
        Linear.cost(p.embed, inner, bias),
        Linear.cost(p.embed, inner, bias),
        Linear.cost(p.embed, inner, bias),
        Linear.cost(inner, p.embed, bias),
        { params: 0, flops: 4 * T * inner }, // scores and weighted sum, per token
        Linear.cost(p.embed, p.ffn, bias),
        Linear.cost(p.ffn, p.embed, bias),
        llama ? Linear.cost(p.embed, p.ffn, false) : zeroCost(), // the SwiGLU gate
      );
    }
    addCost(total, norm);
    if (c.task === 'classify') addCost(total, Linear.cost(p.embed, c.classes ?? 2));
    else addCost(total, { params: 0, flops: 2 * p.embed * c.vocab });
    // Everything above is per token; a sample is a sequence of maxLen tokens.
    return { params: total.params, flops: total.flops * T };
  }

  shrink(sub: SubModel): TransformerConfig {
    const p = this.plan(sub);
    return { ...this.config, layers: p.depth, heads: p.heads, ffn: p.ffn, dim: p.embed };
  }
}
