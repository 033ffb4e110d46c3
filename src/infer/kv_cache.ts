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
    let last: tf.Tensor3D | null = null;
    let lastFrom = T;
    for (let l = 0; l < d; l++) {
      const P = this.filled[l];
      if (P === T) continue;
      const y = tf.tidy(() => {
        const parts = this.hidden.slice(P, T) as tf.Tensor3D[];
        const x = parts.length === 1 ? parts[0] : (tf.concat(parts, 1) as tf.Tensor3D);
        const r = this.model.blockStep(l, x, this.widths, this.kv[l], P);
        this.kv[l] = keepKv(this.kv[l], r.kv);
        return r.y;
      });
      this.filled[l] = T;
      for (let p = P; p < T; p++) this.hidden[p]?.dispose();
      if (l + 1 < this.layers) {
        const rows = T - P === 1 ? [y] : tf.split(y, T - P, 1);
        for (let p = P; p < T; p++) {
          this.hidden[p] = rows[p - P] as tf.Tensor3D;
          this.depth[p] = l + 1;
        }
        if (T - P > 1 && l === d - 1) {
          last = y;
          lastFrom = P;
        } else if (T - P > 1) y.dispose();
        else if (l === d - 1) {
          last = y;
          lastFrom = P;
        }
      } else {
        for (let p = P; p < T; p++) {
          this.hidden[p] = null;
          this.depth[p] = this.layers;
        }
        last = y;
        lastFrom = P;
      }
    }
    return tf.tidy(() => {
      const e = this.hidden[T - 1]?.shape[2] ?? last!.shape[2];
      if (last && !last.isDisposed && T - lastFrom >= m) {
        const rows = T - lastFrom === m ? last : tf.slice(last, [0, T - lastFrom - m, 0], [1, m, e]);
        const out = tf.reshape(rows, [m, e]) as tf.Tensor2D;
        // `last` is either a stored row (kept) or a chunk this call owns.
        if (!this.hidden.includes(last)) last.dispose();
        return out;
      }
      if (last && !this.hidden.includes(last)) last.dispose();
      const rows: tf.Tensor3D[] = [];
      for (let p = T - m; p < T; p++) {
        const h = this.hidden[p];
        if (!h || this.depth[p] !== d)
          throw new Error(`kv cache: position ${p} is at depth ${this.depth[p]}, not ${d}`);
        rows.push(h);
      }
      return tf.reshape(rows.length === 1 ? rows[0] : tf.concat(rows, 1), [m, e]) as tf.Tensor2D;
    });
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
