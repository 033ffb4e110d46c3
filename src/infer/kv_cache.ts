/**
 * The decoding state of a sorted LM: the tokens so far and, per layer, the keys and values of the
 * positions that layer has seen. Prefill runs the prompt once; each step then runs only the new
 * positions. Layers are filled LAZILY: a position that stopped at depth d (an early exit, or a
 * draft token of self-speculative decoding) keeps its hidden state, and the next time anything
 * needs a deeper layer ℓ, every position missing from ℓ goes through it in one batched pass
 * before (and together with) the new one. The cache is therefore always what full decoding of
 * the same tokens would have written: exact, with the cost of skipped layers paid later.
 *
 * Invariant: layer ℓ holds positions 0..filled[ℓ]−1, filled is non-increasing in ℓ, and every
 * position p ≥ filled[ℓ] has been computed up to exactly depth ℓ (its input to layer ℓ is kept).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Transformer } from '../models/transformer.js';
import { keepKv, type KeyValue } from '../nn/attention.js';
import type { SubModel } from '../sorted/submodel.js';

export class KvCache {
  readonly tokens: number[] = [];
  private readonly kv: (KeyValue | null)[];
  private readonly filled: number[];
  /** Per position: its hidden state after `depth[p]` layers ([1, 1, e]), or null once at full depth. */
  private readonly hidden: (tf.Tensor3D | null)[] = [];
  private readonly depth: number[] = [];
  readonly layers: number;

  /** `widths` fixes heads / FFN / embed, per block where it says so (a narrower model has different K/V). */
  constructor(
    readonly model: Transformer,
    readonly widths: SubModel = {},
  ) {
    model.validate(widths);
    this.layers = model.config.layers;
    this.kv = new Array<KeyValue | null>(this.layers).fill(null);
    this.filled = new Array<number>(this.layers).fill(0);
  }

  get length(): number {
    return this.tokens.length;
  }

  /** Positions layer ℓ (0-based) holds. */
  filledAt(layer: number): number {
    return this.filled[layer];
  }

  /** Appends tokens as pending positions (embedded, no layer run yet). */
  append(ids: readonly number[]): void {
    if (ids.length === 0) return;
    const start = this.length;
    const e = tf.tidy(() =>
      this.model.embed(tf.tensor2d(ids as number[], [1, ids.length], 'int32'), this.widths, start),
    );
    const rows = ids.length === 1 ? [e] : tf.split(e, ids.length, 1);
    if (ids.length > 1) e.dispose();
    for (let i = 0; i < ids.length; i++) {
      this.tokens.push(ids[i]);
      this.hidden.push(rows[i] as tf.Tensor3D);
      this.depth.push(0);
    }
  }

  /**
   * Runs every position through layers 1..d (filling what earlier steps skipped) and returns the
   * hidden states at depth d of the last m positions: [m, e], owned by the caller.
   */
  advance(d: number, m = 1): tf.Tensor2D {
    if (!Number.isInteger(d) || d < 1 || d > this.layers)
      throw new Error(`kv cache: depth ${d} must be an integer in 1..${this.layers}`);
    const T = this.length;
    if (m < 1 || m > T) throw new Error(`kv cache: asked for ${m} positions of ${T}`);
    // Positions from..T−1 after the last layer run, as one tensor [1, T − from, e]: a pass over several
    // positions (a prompt, a draft being verified) hands its output straight to the next layer, and only what
    // stops at depth d < L is split into per-position rows, once, at the end.
    let chunk: tf.Tensor3D | null = null;
    let from = T;
    let reached = 0; // the depth of the chunk's positions
    try {
      for (let l = 0; l < d; l++) {
        const P = this.filled[l];
        if (P === T) continue; // nothing new here (nor, filled being non-increasing, in any layer below)
        const stored = this.hidden.slice(P, from) as tf.Tensor3D[]; // at depth l exactly, by the invariant
        const y = tf.tidy(() => {
          const parts = chunk ? [...stored, chunk] : stored;
          const x = parts.length === 1 ? parts[0] : (tf.concat(parts, 1) as tf.Tensor3D);
          const r = this.model.blockStep(l, x, this.widths, this.kv[l], P);
          this.kv[l] = keepKv(this.kv[l], r.kv);
          return r.y;
        });
        tf.dispose(stored);
        chunk?.dispose();
        for (let p = P; p < T; p++) this.hidden[p] = null;
        this.filled[l] = T;
        chunk = y;
        from = P;
        reached = l + 1;
      }
    } catch (err) {
      // A layer failed (out of memory, say): the positions keep the depth they reached, so the cache stays whole.
      if (chunk && !this.store(chunk, from, reached)) chunk.dispose();
      throw err;
    }
    const chunkKept = chunk !== null && this.store(chunk, from, d);
    return tf.tidy(() => {
      const e = (chunk ?? this.hidden[T - 1])?.shape[2] ?? 0;
      const parts: tf.Tensor3D[] = [];
      for (let p = T - m; p < from; p++) {
        const h = this.hidden[p];
        if (!h || this.depth[p] !== d)
          throw new Error(
            `kv cache: position ${p} is not held at depth ${d} (its depth: ${this.depth[p]}${h ? '' : ', its state not kept'})`,
          );
        parts.push(h);
      }
      if (chunk) parts.push(T - from > m ? tf.slice(chunk, [0, T - from - m, 0], [1, m, e]) : chunk);
      const out = tf.reshape(parts.length === 1 ? parts[0] : tf.concat(parts, 1), [m, e]) as tf.Tensor2D;
      // The chunk is this call's unless a single position stored it as its row.
      if (chunk && !chunkKept) chunk.dispose();
      return out;
    });
  }

  /**
   * Keeps positions from..T−1, held in one tensor at `depth`: as a row each below full depth, as nothing at it.
   * True when the chunk itself became a position's row (a single position below full depth).
   */
  private store(chunk: tf.Tensor3D, from: number, depth: number): boolean {
    const T = this.length;
    const full = depth === this.layers;
    const rows = full ? [] : T - from === 1 ? [chunk] : tf.split(chunk, T - from, 1);
    for (let p = from; p < T; p++) {
      this.hidden[p] = full ? null : (rows[p - from] as tf.Tensor3D);
      this.depth[p] = depth;
    }
    return rows[0] === chunk;
  }

  /** Drops positions n.. from every layer (rejected draft tokens). */
  truncate(n: number): void {
    if (n >= this.length) return;
    if (n < 0) throw new Error(`kv cache: cannot truncate to ${n}`);
    for (let l = 0; l < this.layers; l++) {
      const kv = this.kv[l];
      if (!kv || this.filled[l] <= n) continue;
      // The buffers stay; positions n.. are written over by the next step.
      if (n === 0) {
        tf.dispose([kv.k, kv.v]);
        this.kv[l] = null;
      } else this.kv[l] = { ...kv, length: n };
      this.filled[l] = n;
    }
    for (let p = n; p < this.length; p++) this.hidden[p]?.dispose();
    this.hidden.length = n;
    this.depth.length = n;
    this.tokens.length = n;
  }

  dispose(): void {
    this.truncate(0);
  }
}
