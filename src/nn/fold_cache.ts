import * as tf from '@tensorflow/tfjs-core';

/** What one cached fold was made from (data ids, sizes, the BatchNorm's folded tensors); any change makes it again. */
export type FoldSource = readonly unknown[];

interface Entry {
  owner: object;
  key: string;
  from: FoldSource;
  tensors: tf.Tensor[];
  bytes: number;
}

/** The default budget of a FoldCache: room for every sub-model of a small model, a few of a ResNet-50. */
export const DEFAULT_FOLD_BYTES = 256 * 2 ** 20;

/**
 * Weights prepared for inference, kept between forward passes: per layer and sub-model, a convolution's
 * weight prefix with the BatchNorm after it folded in (src/nn/conv_bn.ts). Folding saves the BatchNorm's
 * pass over the activations and the weight slice of every call, and a weight tensor that stays the same
 * lets the engine keep its packed form (XNNPACK caches a convolution's operator by its filter).
 *
 * The cache belongs to whoever runs inference (a DeployedModel, an evaluation) and travels in the forward
 * context, never in a module, so a training step cannot read stale weights. It holds at most `maxBytes`
 * (the least recently used folds go first; 0 turns folding off), or one sub-model's folds where they alone
 * are larger (evicting a layer's fold to make room for the next layer's of the same forward pass would
 * fold every layer again on every call), and makes a fold again when what it was made from changed (new
 * weights, recalibrated statistics).
 */
export class FoldCache {
  /** Per layer, its folds by sub-model (weakly: a layer whose folds are gone is not held). */
  private readonly byOwner = new WeakMap<object, Map<string, Entry>>();
  /** Every entry, least recently used first (a Map keeps insertion order; a hit re-inserts). */
  private readonly order = new Map<Entry, true>();
  private total = 0;
  private limit = DEFAULT_FOLD_BYTES;

  constructor(maxBytes = DEFAULT_FOLD_BYTES) {
    this.maxBytes = maxBytes;
  }

  /** The budget in bytes; lowering it evicts at once (0 disposes every fold and turns folding off). */
  get maxBytes(): number {
    return this.limit;
  }

  set maxBytes(bytes: number) {
    if (!(bytes >= 0)) throw new Error(`FoldCache: maxBytes must be ≥ 0, got ${bytes}`);
    this.limit = bytes;
    this.evict();
  }

  /** Whether folds are kept at all (a budget of 0 bytes turns folding off). */
  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.total;
  }

  /** Folds held. */
  get size(): number {
    return this.order.size;
  }

  /**
   * The tensors `make` returns for `owner` (a layer) under sub-model `key`, made once and kept while `from`
   * is unchanged (element by element, ===). `make` runs in its own tidy; what it returns is kept. The entry
   * returned is never the one evicted to make room, so the caller may use it at once.
   */
  get<T extends tf.Tensor[]>(owner: object, key: string, from: FoldSource, make: () => T): T {
    let entries = this.byOwner.get(owner);
    if (!entries) this.byOwner.set(owner, (entries = new Map()));
    const hit = entries.get(key);
    if (hit && hit.from.length === from.length && hit.from.every((v, i) => v === from[i])) {
      this.order.delete(hit);
      this.order.set(hit, true);
      return hit.tensors as T;
    }
    if (hit) this.drop(hit);
    const tensors = tf.tidy(make);
    for (const t of tensors) tf.keep(t);
    const entry: Entry = {
      owner,
      key,
      from: [...from],
      tensors,
      bytes: tensors.reduce((a, t) => a + t.size * 4, 0),
    };
    entries.set(key, entry);
    this.order.set(entry, true);
    this.total += entry.bytes;
    this.evict(key);
    return tensors;
  }

  /** Drops the least recently used folds until the budget holds, never those of sub-model `keep`. */
  private evict(keep?: string): void {
    for (const old of [...this.order.keys()]) {
      if (this.total <= this.limit) return;
      if (old.key !== keep) this.drop(old);
    }
  }

  /** Disposes every fold. */
  clear(): void {
    for (const e of [...this.order.keys()]) this.drop(e);
  }

  private drop(e: Entry): void {
    tf.dispose(e.tensors);
    this.order.delete(e);
    this.total -= e.bytes;
    const entries = this.byOwner.get(e.owner);
    if (entries?.get(e.key) === e) entries.delete(e.key);
  }
}
