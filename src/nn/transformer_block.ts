import type * as tf from '@tensorflow/tfjs-core';
import * as tfc from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from './module.js';
import { LayerNorm, RMSNorm } from './norm.js';
import { MultiHeadAttention, type KeyValue } from './attention.js';
import { FeedForward } from './ffn.js';
import { dropout, type Activation } from './functional.js';

/**
 * Pre-norm transformer block: x + attn(norm1(x)), then x + ffn(norm2(x)). Elastic heads and FFN
 * width. GPT-style (LayerNorm, GELU, biases) or LLaMA-style (RMSNorm, SwiGLU, rotary, no biases).
 */
export class TransformerBlock extends Module {
  readonly ln1: LayerNorm | RMSNorm;
  readonly attn: MultiHeadAttention;
  readonly ln2: LayerNorm | RMSNorm;
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
      norm?: 'layer' | 'rms';
      /** Rotary positions in attention with this base; none when absent. */
      ropeBase?: number;
      bias?: boolean;
    } = {},
  ) {
    super();
    const name = opts.name ?? 'block';
    const norm = (n: string) => (opts.norm === 'rms' ? new RMSNorm(dim, n) : new LayerNorm(dim, n));
    this.ln1 = this.addChild('ln1', norm(`${name}.ln1`));
    this.attn = this.addChild(
      'attn',
      new MultiHeadAttention(dim, heads, seed, {
        causal: opts.causal,
        dropout: opts.dropout,
        name: `${name}.attn`,
        headDim,
        ropeBase: opts.ropeBase,
        bias: opts.bias,
      }),
    );
    this.ln2 = this.addChild('ln2', norm(`${name}.ln2`));
    this.ffn = this.addChild(
      'ffn',
      new FeedForward(dim, ffnHidden, seed, opts.activation ?? 'gelu', `${name}.ffn`, opts.bias ?? true),
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

  /** Decoding (eval): positions start..start+n−1 of x [B, n, e] over the cache `past` of this block. */
  step(
    x: tf.Tensor3D,
    widths: { heads: number; ffn: number },
    past: KeyValue | null,
    start: number,
  ): { y: tf.Tensor3D; kv: KeyValue } {
    const { y: a, kv } = this.attn.step(this.ln1.forward(x) as tf.Tensor3D, widths.heads, past, start);
    const h = tfc.add(x, a) as tf.Tensor3D;
    return { y: tfc.add(h, this.ffn.forward(this.ln2.forward(h), widths.ffn)) as tf.Tensor3D, kv };
  }
}
