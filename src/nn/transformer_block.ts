import type * as tf from '@tensorflow/tfjs-core';
import * as tfc from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from './module.js';
import { LayerNorm } from './norm.js';
import { MultiHeadAttention } from './attention.js';
import { FeedForward } from './ffn.js';
import { dropout, type Activation } from './functional.js';

/** Pre-LN transformer block: x + attn(ln1(x)), then x + ffn(ln2(x)). Elastic heads and FFN width. */
export class TransformerBlock extends Module {
  readonly ln1: LayerNorm;
  readonly attn: MultiHeadAttention;
  readonly ln2: LayerNorm;
  readonly ffn: FeedForward;

  constructor(
    dim: number,
    heads: number,
    headDim: number,
    ffnHidden: number,
    seed: () => number,
    readonly opts: {
      causal?: boolean;
      dropout?: number;
      activation?: Activation | 'swiglu';
      name?: string;
    } = {},
  ) {
    super();
    const name = opts.name ?? 'block';
    this.ln1 = this.addChild('ln1', new LayerNorm(dim, `${name}.ln1`));
    this.attn = this.addChild(
      'attn',
      new MultiHeadAttention(dim, heads, seed, {
        causal: opts.causal,
        dropout: opts.dropout,
        name: `${name}.attn`,
        headDim,
      }),
    );
    this.ln2 = this.addChild('ln2', new LayerNorm(dim, `${name}.ln2`));
    this.ffn = this.addChild(
      'ffn',
      new FeedForward(dim, ffnHidden, seed, opts.activation ?? 'gelu', `${name}.ffn`),
    );
  }

  /** x: [B, T, e] → [B, T, e]. */
  forward(x: tf.Tensor3D, widths: { heads: number; ffn: number }, ctx: ForwardContext): tf.Tensor3D {
    const p = this.opts.dropout ?? 0;
    const a = dropout(this.attn.forward(this.ln1.forward(x) as tf.Tensor3D, ctx, widths.heads), p, ctx);
    const h = tfc.add(x, a) as tf.Tensor3D;
    const f = dropout(this.ffn.forward(this.ln2.forward(h), widths.ffn), p, ctx);
    return tfc.add(h, f) as tf.Tensor3D;
  }
}
