import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from './module.js';
import { Linear } from './linear.js';
import { dropout } from './functional.js';
import { checkUnits } from '../sorted/slice.js';
import { causalMask, scaledDotProductAttention } from '../engine/ops/scaled_dot_product_attention.js';

export { causalMask };

/**
 * Multi-head self-attention with head-blocked projections: head i owns columns
 * [i·hd, (i+1)·hd) of Q, K, V and the matching rows of O, so the first h heads are a prefix
 * slice (sorted heads). The model dim is read from x (sorted embedding).
 */
export class MultiHeadAttention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly headDim: number;
  constructor(
    readonly dim: number,
    readonly heads: number,
    seed: () => number,
    readonly opts: { causal?: boolean; dropout?: number; name?: string; headDim?: number } = {},
  ) {
    super();
    const name = opts.name ?? 'attn';
    if (opts.headDim === undefined && dim % heads !== 0) {
      throw new Error(`${name}: dim ${dim} is not divisible by ${heads} heads; pass headDim or change heads`);
    }
    this.headDim = opts.headDim ?? dim / heads;
    const inner = heads * this.headDim;
    this.q = this.addChild('q', new Linear(dim, inner, seed, { name: `${name}.q` }));
    this.k = this.addChild('k', new Linear(dim, inner, seed, { name: `${name}.k` }));
    this.v = this.addChild('v', new Linear(dim, inner, seed, { name: `${name}.v` }));
    this.o = this.addChild('o', new Linear(inner, dim, seed, { name: `${name}.o` }));
  }

  /** x: [B, T, e] → [B, T, e], using the first `heads` heads. */
  forward(x: tf.Tensor3D, ctx: ForwardContext, heads = this.heads): tf.Tensor3D {
    checkUnits(heads, this.heads, this.opts.name ?? 'attn', 'heads');
    const [B, T, e] = x.shape;
    const hd = this.headDim;
    const width = heads * hd;
    const split = (t: tf.Tensor) =>
      tf.transpose(tf.reshape(t, [B, T, heads, hd]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, h, T, hd]
    const q = split(this.q.forward(x, width));
    const k = split(this.k.forward(x, width));
    const v = split(this.v.forward(x, width));
    const rate = ctx.mode === 'train' ? (this.opts.dropout ?? 0) : 0;
    let out: tf.Tensor;
    if (rate === 0) {
      out = scaledDotProductAttention(q, k, v, { causal: this.opts.causal });
    } else {
      // Dropout on the attention weights needs them in the open: the composite, autodiffed.
      let att = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd)); // [B, h, T, T]
      if (this.opts.causal) att = tf.add(att, causalMask(T));
      out = tf.matMul(dropout(tf.softmax(att), rate, ctx), v);
    }
    const y = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B, T, width]);
    return this.o.forward(y, e) as tf.Tensor3D;
  }
}
