import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from './module.js';
import { Linear } from './linear.js';
import { dropout } from './functional.js';
import { checkUnits } from '../sorted/slice.js';
import { causalMask, scaledDotProductAttention } from '../engine/ops/scaled_dot_product_attention.js';
import { applyRotary, type RopeOptions } from './rotary.js';
import { cachedAttention, cachedAttentionAvailable } from '../engine/ops/cached_attention.js';

export { causalMask };

/**
 * Keys and values of the positions decoded so far, one per key/value head: buffers [B, kvHeads, C, headDim]
 * whose first `length` positions are the cache; the rest is room that later steps write into in place
 * (where the backend has the cached-attention kernel: cpu, and wasm with the native addon), so that a step
 * does not copy the whole cache to append to it.
 */
export interface KeyValue {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  length: number;
}

/** Smallest buffer a cache starts with: room for short prompts and their first tokens without regrowing. */
const MIN_CAPACITY = 64;

/**
 * `next` kept for the caller, and whichever buffers of `old` it no longer uses disposed (a step that wrote
 * into the buffers in place returns them again).
 */
export function keepKv(old: KeyValue | null, next: KeyValue): KeyValue {
  const kept = { k: tf.keep(next.k), v: tf.keep(next.v), length: next.length };
  if (old && old.k !== next.k) old.k.dispose();
  if (old && old.v !== next.v) old.v.dispose();
  return kept;
}

/** `past`'s buffers when they have room for `need` positions; else new ones (doubling) holding its positions. */
function withRoom(past: KeyValue | null, need: number, B: number, kvHeads: number, hd: number): KeyValue {
  if (past && past.k.shape[2] >= need) return past;
  const capacity = Math.max(MIN_CAPACITY, 2 ** Math.ceil(Math.log2(need)));
  if (!past) {
    const zeros = () => tf.zeros([B, kvHeads, capacity, hd]) as tf.Tensor4D;
    return { k: zeros(), v: zeros(), length: 0 };
  }
  const room = (t: tf.Tensor4D) =>
    tf.pad(t, [
      [0, 0],
      [0, 0],
      [0, capacity - past.length],
      [0, 0],
    ]) as tf.Tensor4D;
  const [k, v] = held(past);
  return { k: room(k), v: room(v), length: past.length };
}

/** The first `length` positions of a cache as tensors of their own (a no-op when the buffers are full). */
function held(past: KeyValue): [tf.Tensor4D, tf.Tensor4D] {
  const [B, h, C, hd] = past.k.shape;
  if (C === past.length) return [past.k, past.v];
  const size = [B, h, past.length, hd];
  return [tf.slice(past.k, [0, 0, 0, 0], size), tf.slice(past.v, [0, 0, 0, 0], size)];
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
 * Key/value heads [B, kv, T, hd] repeated for their query heads: [B, kv·g, T, hd], query head i
 * reading key/value head ⌊i/g⌋ (Hugging Face's `repeat_kv`, i.e. repeat_interleave on axis 1).
 */
function repeatKv(t: tf.Tensor4D, group: number): tf.Tensor4D {
  if (group === 1) return t;
  const kv = t.shape[1];
  const idx = tf.tensor1d(
    Array.from({ length: kv * group }, (_, i) => Math.floor(i / group)),
    'int32',
  );
  return tf.gather(t, idx, 1) as tf.Tensor4D;
}

/**
 * Multi-head self-attention with head-blocked projections: head i owns columns
 * [i·hd, (i+1)·hd) of Q, K, V and the matching rows of O, so the first h heads are a prefix
 * slice (sorted heads). The model dim is read from x (sorted embedding).
 *
 * Grouped-query attention (`kvHeads` < heads): K and V have kvHeads heads, each shared by
 * g = heads/kvHeads consecutive query heads; a sub-model keeps whole groups (h a multiple of g,
 * h/g key/value heads), so its K and V are prefix slices too.
 */
export class MultiHeadAttention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly headDim: number;
  /** Key/value heads, and query heads per key/value head. */
  readonly kvHeads: number;
  readonly group: number;
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
      /** Llama 3 scaling of the rotary frequencies. */
      ropeScaling?: RopeOptions['scaling'];
      /** Biases of q, k and v (default true). */
      bias?: boolean;
      /** Bias of the output projection (default: as `bias`; Qwen2 has q/k/v biases only). */
      outBias?: boolean;
      /** Key/value heads (grouped-query attention; default `heads`): must divide `heads`. */
      kvHeads?: number;
    } = {},
  ) {
    super();
    const name = opts.name ?? 'attn';
    if (opts.headDim === undefined && dim % heads !== 0) {
      throw new Error(`${name}: dim ${dim} is not divisible by ${heads} heads; pass headDim or change heads`);
    }
    this.kvHeads = opts.kvHeads ?? heads;
    if (!Number.isInteger(this.kvHeads) || this.kvHeads < 1 || heads % this.kvHeads !== 0)
      throw new Error(
        `${name}: ${heads} heads cannot share ${this.kvHeads} key/value heads; kvHeads must divide heads`,
      );
    this.group = heads / this.kvHeads;
    this.headDim = opts.headDim ?? dim / heads;
    const inner = heads * this.headDim;
    const kvInner = this.kvHeads * this.headDim;
    const bias = opts.bias;
    const outBias = opts.outBias ?? bias;
    this.q = this.addChild('q', new Linear(dim, inner, seed, { name: `${name}.q`, bias }));
    this.k = this.addChild('k', new Linear(dim, kvInner, seed, { name: `${name}.k`, bias }));
    this.v = this.addChild('v', new Linear(dim, kvInner, seed, { name: `${name}.v`, bias }));
    this.o = this.addChild('o', new Linear(inner, dim, seed, { name: `${name}.o`, bias: outBias }));
  }

  /** Key/value heads of `heads` active query heads (whole groups only). */
  activeKvHeads(heads: number): number {
    const name = this.opts.name ?? 'attn';
    checkUnits(heads, this.heads, name, 'heads');
    if (heads % this.group !== 0)
      throw new Error(
        `heads ${heads} in '${name}' is not a whole number of key/value groups: ${this.group} query heads share each key/value head; use a multiple of ${this.group}`,
      );
    return heads / this.group;
  }

  /** q [B, h, T, hd] and k, v [B, h/g, T, hd] of x, rotated to positions start.. when rotary. */
  private project(x: tf.Tensor3D, heads: number, start: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
    const [B, T] = x.shape;
    const hd = this.headDim;
    // [B, T, h·hd] → [B, h, T, hd]
    const split = (t: tf.Tensor, h: number) =>
      tf.transpose(tf.reshape(t, [B, T, h, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    return this.qkv(x, heads, start, split);
  }

  /** The q, k and v projections of x, each laid out by `split` as [B, h, n, hd], rotated to positions start... */
  private qkv(
    x: tf.Tensor,
    heads: number,
    start: number,
    split: (t: tf.Tensor, h: number) => tf.Tensor4D,
  ): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
    const hd = this.headDim;
    const kvHeads = this.activeKvHeads(heads);
    let q = split(this.q.forward(x, heads * hd), heads);
    let k = split(this.k.forward(x, kvHeads * hd), kvHeads);
    const v = split(this.v.forward(x, kvHeads * hd), kvHeads);
    if (this.opts.ropeBase !== undefined) {
      const rope: RopeOptions = { base: this.opts.ropeBase, scaling: this.opts.ropeScaling };
      q = applyRotary(q, start, rope);
      k = applyRotary(k, start, rope);
    }
    return [q, k, v];
  }

  /**
   * Decoding with a KV cache (causal, eval): x [B·n, e] holds positions start..start+n−1 of B
   * sequences (row-major: sequence, then position); they attend to `past` (the cache of
   * positions 0..start−1) and causally to each other. Returns the output [B·n, e] and the cache
   * extended by these n positions, written into `past`'s buffers in place where the backend can (new,
   * larger ones when they are full): keep it with `keepKv`, which disposes only what was replaced.
   * `keyMask` (additive, broadcast to [B, h, n, P + n]) hides keys per sequence: the left padding of a batch of prompts. Rows stay 2-D from the projections to
   * the output projection: every reshape saved is a kernel call saved in every step.
   */
  step(
    x: tf.Tensor2D,
    B: number,
    heads: number,
    past: KeyValue | null,
    start: number,
    keyMask?: tf.Tensor,
  ): { y: tf.Tensor2D; kv: KeyValue } {
    const kvHeads = this.activeKvHeads(heads); // the heads are checked before the cache
    const [rows, e] = x.shape;
    const n = rows / B;
    const hd = this.headDim;
    const P = past ? past.length : 0;
    if (P !== start)
      throw new Error(`${this.opts.name ?? 'attn'}: cache holds ${P} positions, step starts at ${start}`);
    // [B·n, h·hd] → [B, h, n, hd]; for one position per sequence the transpose moves nothing.
    const split = (t: tf.Tensor, h: number) =>
      (n === 1
        ? tf.reshape(t, [B, h, 1, hd])
        : tf.transpose(tf.reshape(t, [B, n, h, hd]), [0, 2, 1, 3])) as tf.Tensor4D;
    const [q, kNew, vNew] = this.qkv(x, heads, start, split);
    if (cachedAttentionAvailable()) {
      // Appended in place; the kernel returns the rows [B, n, h, hd] the output projection reads.
      const room = withRoom(past, P + n, B, kvHeads, hd);
      const out = cachedAttention(q, kNew, vNew, room, P, keyMask);
      const y = tf.reshape(out, [rows, heads * hd]);
      return { y: this.o.forward(y, e) as tf.Tensor2D, kv: { ...room, length: P + n } };
    }
    const [pk, pv] = past ? held(past) : [null, null];
    const k = pk ? (tf.concat([pk, kNew], 2) as tf.Tensor4D) : kNew;
    const v = pv ? (tf.concat([pv, vNew], 2) as tf.Tensor4D) : vNew;
    // The cache keeps the key/value heads; they are repeated for their query heads per step.
    const kq = repeatKv(k, this.group);
    const vq = repeatKv(v, this.group);
    let s = tf.matMul(tf.mul(q, 1 / Math.sqrt(hd)), kq, false, true); // [B, h, n, P + n]
    if (n > 1) s = tf.add(s, stepMask(n, P));
    if (keyMask) s = tf.add(s, keyMask);
    const out = tf.matMul(tf.softmax(s), vq); // [B, h, n, hd]
    const y = tf.reshape(n === 1 ? out : tf.transpose(out, [0, 2, 1, 3]), [rows, heads * hd]);
    return { y: this.o.forward(y, e) as tf.Tensor2D, kv: { k, v, length: P + n } };
  }

  /** x: [B, T, e] → [B, T, e], using the first `heads` heads. */
  forward(x: tf.Tensor3D, ctx: ForwardContext, heads = this.heads): tf.Tensor3D {
    const [B, T, e] = x.shape;
    const hd = this.headDim;
    const width = heads * hd;
    const [q, kv, vv] = this.project(x, heads, 0);
    const k = repeatKv(kv, this.group);
    const v = repeatKv(vv, this.group);
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
