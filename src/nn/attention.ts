import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from './module.js';
import { Linear } from './linear.js';
import { dropout } from './functional.js';
import { checkUnits } from '../sorted/slice.js';
import { causalMask, scaledDotProductAttention } from '../engine/ops/scaled_dot_product_attention.js';
import { applyRotary } from './rotary.js';

export { causalMask };

/** Keys and values of the positions decoded so far: [B, heads, T, headDim] each. */
export interface KeyValue {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/**
 * [n, past + n] additive mask for n new queries after `past` cached keys: query i sees keys
 * 0..past+i. Built in JS: it changes with every step, so caching it buys nothing.
 */
function stepMask(n: number, past: number): tf.Tensor2D {
  const m = new Float32Array(n * (past + n));
  for (let i = 0; i < n; i++) for (let j = past + i + 1; j < past + n; j++) m[i * (past + n) + j] = -1e9;
  return tf.tensor2d(m, [n, past + n]);
}

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
    readonly opts: {
      causal?: boolean;
      dropout?: number;
      name?: string;
      headDim?: number;
      /** Rotary positions with this base (LLaMA: 10000); none when absent. */
      ropeBase?: number;
      bias?: boolean;
    } = {},
  ) {
    super();
    const name = opts.name ?? 'attn';
    if (opts.headDim === undefined && dim % heads !== 0) {
      throw new Error(`${name}: dim ${dim} is not divisible by ${heads} heads; pass headDim or change heads`);
    }
    this.headDim = opts.headDim ?? dim / heads;
    const inner = heads * this.headDim;
    const bias = opts.bias;
    this.q = this.addChild('q', new Linear(dim, inner, seed, { name: `${name}.q`, bias }));
    this.k = this.addChild('k', new Linear(dim, inner, seed, { name: `${name}.k`, bias }));
    this.v = this.addChild('v', new Linear(dim, inner, seed, { name: `${name}.v`, bias }));
    this.o = this.addChild('o', new Linear(inner, dim, seed, { name: `${name}.o`, bias }));
  }

  /** q, k, v of x: [B, h, T, hd] each, rotated to positions start.. when rotary. */
  private project(x: tf.Tensor3D, heads: number, start: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
    const [B, T] = x.shape;
    const hd = this.headDim;
    const width = heads * hd;
    const split = (t: tf.Tensor) =>
      tf.transpose(tf.reshape(t, [B, T, heads, hd]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, h, T, hd]
    let q = split(this.q.forward(x, width));
    let k = split(this.k.forward(x, width));
    const v = split(this.v.forward(x, width));
    if (this.opts.ropeBase !== undefined) {
      q = applyRotary(q, start, this.opts.ropeBase);
      k = applyRotary(k, start, this.opts.ropeBase);
    }
    return [q, k, v];
  }

  /**
   * Decoding with a KV cache (causal, eval): x [B, n, e] holds positions start..start+n−1; they
   * attend to `past` (the cache of positions 0..start−1) and causally to each other. Returns the
   * output and the cache extended by these n positions. `keyMask` (additive, broadcast to
   * [B, h, n, P + n]) hides keys per sequence: the left padding of a batch of prompts.
   */
  step(
    x: tf.Tensor3D,
    heads: number,
    past: KeyValue | null,
    start: number,
    keyMask?: tf.Tensor,
  ): { y: tf.Tensor3D; kv: KeyValue } {
    checkUnits(heads, this.heads, this.opts.name ?? 'attn', 'heads');
    const [B, n, e] = x.shape;
    const P = past ? past.k.shape[2] : 0;
    if (P !== start)
      throw new Error(`${this.opts.name ?? 'attn'}: cache holds ${P} positions, step starts at ${start}`);
    const [q, kNew, vNew] = this.project(x, heads, start);
    const k = past ? (tf.concat([past.k, kNew], 2) as tf.Tensor4D) : kNew;
    const v = past ? (tf.concat([past.v, vNew], 2) as tf.Tensor4D) : vNew;
    let s = tf.matMul(tf.mul(q, 1 / Math.sqrt(this.headDim)), k, false, true); // [B, h, n, P + n]
    if (n > 1) s = tf.add(s, stepMask(n, P));
    if (keyMask) s = tf.add(s, keyMask);
    const out = tf.matMul(tf.softmax(s), v);
    const y = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B, n, heads * this.headDim]);
    return { y: this.o.forward(y, e) as tf.Tensor3D, kv: { k, v } };
  }

  /** x: [B, T, e] → [B, T, e], using the first `heads` heads. */
  forward(x: tf.Tensor3D, ctx: ForwardContext, heads = this.heads): tf.Tensor3D {
    checkUnits(heads, this.heads, this.opts.name ?? 'attn', 'heads');
    const [B, T, e] = x.shape;
    const hd = this.headDim;
    const width = heads * hd;
    const [q, k, v] = this.project(x, heads, 0);
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
