import type * as tf from '@tensorflow/tfjs-core';
import * as tfc from '@tensorflow/tfjs-core';
import { Module, evalContext, type ForwardContext } from './module.js';
import { LayerNorm, RMSNorm } from './norm.js';
import { MultiHeadAttention, type KeyValue } from './attention.js';
import { FeedForward } from './ffn.js';
import type { RopeScaling } from './rotary.js';
import { Linear } from './linear.js';
import { dropout, type Activation } from './functional.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';

/**
 * The FFN of a block, of any kind: a dense FeedForward, or a mixture of experts (MoE, PAD-MoE,
 * compact PAD-MoE from src/dynamic). x [..., e] → [..., e] through the first `hidden` units where
 * the layer is elastic (MoE layers accept only their full width); auxiliary losses go to ctx.aux.
 */
export interface BlockFfn extends Module {
  forward(x: tf.Tensor, hidden: number, ctx: ForwardContext): tf.Tensor;
  /** Parameters and FLOPs per token with `embed` model units and `hidden` hidden units. */
  cost(embed: number, hidden: number): Cost;
}

/** Makes the FFN `name` (e.g. `blocks.1.ffn`) of a block: `dim` → `hidden` → `dim`. */
export type FfnFactory = (dim: number, hidden: number, name: string, seed: () => number) => BlockFfn;

/** Dense FFNs: GELU/ReLU with biases (GPT), or SwiGLU without (LLaMA). */
export const denseFfn =
  (activation: Activation | 'swiglu' = 'gelu', bias = true): FfnFactory =>
  (dim, hidden, name, seed) =>
    new FeedForward(dim, hidden, seed, activation, name, bias);

/** Active heads and FFN hidden units of one block. */
export interface BlockWidths {
  heads: number;
  ffn: number;
}

/**
 * Pre-norm transformer block: x + attn(norm1(x)), then x + ffn(norm2(x)). Elastic heads and FFN
 * width. GPT-style (LayerNorm, GELU, biases) or LLaMA-style (RMSNorm, SwiGLU, rotary, no biases).
 * The FFN comes from `makeFfn` (dense by default; MoE or PAD-MoE for the MoE transformer).
 */
export class TransformerBlock extends Module {
  readonly ln1: LayerNorm | RMSNorm;
  readonly attn: MultiHeadAttention;
  readonly ln2: LayerNorm | RMSNorm;
  readonly ffn: BlockFfn;

  constructor(
    dim: number,
    heads: number,
    headDim: number,
    readonly ffnHidden: number,
    seed: () => number,
    readonly opts: {
      causal?: boolean;
      dropout?: number;
      name?: string;
      norm?: 'layer' | 'rms';
      /** Rotary positions in attention with this base; none when absent. */
      ropeBase?: number;
      ropeScaling?: RopeScaling;
      /** Biases of the attention's q/k/v and of the FFN (default true). */
      bias?: boolean;
      /** Bias of the attention's output projection (default: as `bias`). */
      outBias?: boolean;
      /** Key/value heads (grouped-query attention; default: one per head). */
      kvHeads?: number;
      /** Epsilon of both norms (default: the norm's own, 1e-5 LayerNorm, 1e-6 RMSNorm). */
      normEps?: number;
    } = {},
    makeFfn: FfnFactory = denseFfn('gelu', opts.bias ?? true),
  ) {
    super();
    const name = opts.name ?? 'block';
    const norm = (n: string) =>
      opts.norm === 'rms' ? new RMSNorm(dim, n, opts.normEps) : new LayerNorm(dim, n, opts.normEps);
    this.ln1 = this.addChild('ln1', norm(`${name}.ln1`));
    this.attn = this.addChild(
      'attn',
      new MultiHeadAttention(dim, heads, seed, {
        causal: opts.causal,
        dropout: opts.dropout,
        name: `${name}.attn`,
        headDim,
        ropeBase: opts.ropeBase,
        ropeScaling: opts.ropeScaling,
        bias: opts.bias,
        outBias: opts.outBias,
        kvHeads: opts.kvHeads,
      }),
    );
    this.ln2 = this.addChild('ln2', norm(`${name}.ln2`));
    this.ffn = this.addChild('ffn', makeFfn(dim, ffnHidden, `${name}.ffn`, seed));
  }

  /** x: [B, T, e] → [B, T, e]. */
  forward(x: tf.Tensor3D, widths: BlockWidths, ctx: ForwardContext): tf.Tensor3D {
    const p = this.opts.dropout ?? 0;
    const a = dropout(this.attn.forward(this.ln1.forward(x) as tf.Tensor3D, ctx, widths.heads), p, ctx);
    const h = tfc.add(x, a) as tf.Tensor3D;
    const f = dropout(this.ffn.forward(this.ln2.forward(h), widths.ffn, ctx), p, ctx);
    return tfc.add(h, f) as tf.Tensor3D;
  }

  /**
   * Decoding (eval): positions start..start+n−1 of x [B, n, e] over the cache `past` of this block.
   * Works on the [B·n, e] rows throughout (norms, projections and the FFN are per row), reshaping
   * only at the ends.
   */
  step(
    x: tf.Tensor3D,
    widths: BlockWidths,
    past: KeyValue | null,
    start: number,
    keyMask?: tfc.Tensor,
  ): { y: tf.Tensor3D; kv: KeyValue } {
    const [B, n, e] = x.shape;
    const x2 = tfc.reshape(x, [B * n, e]) as tf.Tensor2D;
    const { y: a, kv } = this.attn.step(
      this.ln1.forward(x2) as tf.Tensor2D,
      B,
      widths.heads,
      past,
      start,
      keyMask,
    );
    const h = tfc.add(x2, a);
    const f = this.ffn.forward(this.ln2.forward(h), widths.ffn, evalContext('decode'));
    return { y: tfc.reshape(tfc.add(h, f), [B, n, e]) as tf.Tensor3D, kv };
  }

  /** Parameters and FLOPs per token with `embed` model units, over sequences of T tokens. */
  cost(embed: number, widths: BlockWidths, T: number): Cost {
    const inner = widths.heads * this.attn.headDim;
    const kvInner = this.attn.activeKvHeads(widths.heads) * this.attn.headDim;
    const bias = this.opts.bias ?? true;
    const norm = { params: (this.opts.norm === 'rms' ? 1 : 2) * embed, flops: 0 };
    const kv = Linear.cost(embed, kvInner, bias);
    return addCost(
      zeroCost(),
      norm,
      norm,
      Linear.cost(embed, inner, bias),
      kv,
      kv,
      Linear.cost(inner, embed, this.opts.outBias ?? bias),
      { params: 0, flops: 4 * T * inner }, // scores and weighted sum, per token
      this.ffn.cost(embed, widths.ffn),
    );
  }
}
