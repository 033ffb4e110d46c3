/**
 * Byte-level BPE training (Sennrich et al. 2016; GPT-2's byte-level variant): start from the 256
 * bytes, repeatedly merge the most frequent adjacent pair inside pre-tokenized pieces. Pair counts
 * are updated only in the pieces a merge touches, and a lazy max-heap finds the next best pair,
 * so a few thousand merges over a 10 M-character corpus take seconds, not hours.
 */
import { BYTE_TO_CHAR, preTokenize } from './byte_level.js';
import { BpeTokenizer, END_OF_TEXT } from './bpe.js';

export interface BpeTrainOptions {
  /** Final vocabulary size: 256 bytes + merges + special tokens. */
  vocabSize: number;
  specialTokens?: string[];
  /** Pairs seen fewer times are never merged (default 2). */
  minFrequency?: number;
}

/** Max-heap of (count, key), ties broken by the smaller key so training is deterministic. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number {
    return this.keys.length;
  }
  private above(i: number, j: number): boolean {
    return (
      this.counts[i] > this.counts[j] || (this.counts[i] === this.counts[j] && this.keys[i] < this.keys[j])
    );
  }
  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    for (let i = this.keys.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0], this.keys[0]];
    const last = this.keys.length - 1;
    this.swap(0, last);
    this.counts.pop();
    this.keys.pop();
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < last && this.above(l, m)) m = l;
      if (r < last && this.above(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }
}

export function trainBpe(texts: Iterable<string>, o: BpeTrainOptions): BpeTokenizer {
  const specials = o.specialTokens ?? [END_OF_TEXT];
  const minFrequency = o.minFrequency ?? 2;
  const merges = o.vocabSize - 256 - specials.length;
  if (!Number.isInteger(o.vocabSize) || merges < 0 || o.vocabSize > 0x10000) {
    throw new Error(
      `trainBpe: vocabSize ${o.vocabSize} must be an integer in ${256 + specials.length}..65536 (256 bytes + ${specials.length} special tokens + merges)`,
    );
  }
  // Distinct pieces with their frequencies: BPE never merges across pieces.
  const freqOf = new Map<string, number>();
  for (const text of texts) for (const p of preTokenize(text)) freqOf.set(p, (freqOf.get(p) ?? 0) + 1);
  const tokens = [...BYTE_TO_CHAR];
  const idOf = new Map(tokens.map((t, i) => [t, i]));
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [p, f] of freqOf) {
    words.push(Array.from(p, (c) => idOf.get(c)!));
    freq.push(f);
  }
  const count = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const key = (a: number, b: number) => a * 0x10000 + b;
  const touch = (w: number, sign: 1 | -1, changed: Set<number>) => {
    const word = words[w];
    for (let i = 0; i + 1 < word.length; i++) {
      const k = key(word[i], word[i + 1]);
      count.set(k, (count.get(k) ?? 0) + sign * freq[w]);
      changed.add(k);
      if (sign > 0) {
        let s = where.get(k);
        if (!s) where.set(k, (s = new Set()));
        s.add(w);
      }
    }
  };
  const heap = new PairHeap();
  const initial = new Set<number>();
  for (let w = 0; w < words.length; w++) touch(w, 1, initial);
  for (const k of initial) heap.push(count.get(k)!, k);

  const mergeList: [string, string][] = [];
  while (mergeList.length < merges && heap.size > 0) {
    const [c, k] = heap.pop();
    if (count.get(k) !== c) continue; // stale entry: the count changed since it was pushed
    if (c < minFrequency) break;
    const a = Math.floor(k / 0x10000);
    const b = k % 0x10000;
    // Two merge paths can spell the same string ("ab c", "a bc"): they share one token.
    let z = idOf.get(tokens[a] + tokens[b]);
    if (z === undefined) {
      z = tokens.length;
      tokens.push(tokens[a] + tokens[b]);
      idOf.set(tokens[z], z);
    }
    mergeList.push([tokens[a], tokens[b]]);
    const changed = new Set<number>();
    for (const w of where.get(k) ?? []) {
      const word = words[w];
      let has = false;
      for (let i = 0; i + 1 < word.length && !has; i++) has = word[i] === a && word[i + 1] === b;
      if (!has) continue;
      touch(w, -1, changed);
      const merged: number[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          merged.push(z);
          i++;
        } else merged.push(word[i]);
      }
      words[w] = merged;
      touch(w, 1, changed);
    }
    count.delete(k);
    where.delete(k);
    for (const ck of changed) {
      const n = count.get(ck);
      if (n !== undefined && n > 0 && ck !== k) heap.push(n, ck);
    }
  }
  return new BpeTokenizer([...tokens, ...specials], mergeList, specials);
}
