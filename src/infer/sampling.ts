/**
 * Turning logits into a next-token distribution (temperature, top-k, top-p) and drawing from it.
 * Plain arrays: vocabularies of a few thousand tokens are cheaper to handle in JS than as tensors,
 * and speculative sampling needs the exact probabilities of both models anyway.
 */
import type { Rng } from '../data/random.js';

export interface SamplingOptions {
  /** 0 = greedy (argmax); default 1. */
  temperature?: number;
  /** Keep the k most likely tokens (0 or absent: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 or absent: all). */
  topP?: number;
}

export function checkSampling(o: SamplingOptions, vocab: number): void {
  const t = o.temperature ?? 1;
  if (!(Number.isFinite(t) && t >= 0))
    throw new Error(`temperature must be a number ≥ 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0))
    throw new Error(`top-k must be an integer ≥ 0 (0 = off), got ${o.topK}`);
  if (o.topK !== undefined && o.topK > vocab)
    throw new Error(`top-k ${o.topK} exceeds the vocabulary (${vocab})`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1))
    throw new Error(`top-p must be in (0, 1], got ${o.topP}`);
}

/** How sure an exit is of its token: its top softmax probability, or its top-1 − top-2 logit gap. */
export type ExitMeasure = 'probability' | 'margin';

/** The largest softmax probability of logits x[at..at+n): 1 / Σ exp(x − max), without allocating. */
export function topProbability(x: ArrayLike<number>, at = 0, n = x.length - at): number {
  let max = -Infinity;
  for (let i = at; i < at + n; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = at; i < at + n; i++) sum += Math.exp(x[i] - max);
  return 1 / sum;
}

/**
 * The gap between the largest and the second-largest logit of x[at..at+n) (0 on a tie): one pass,
 * no exponentials. Unlike the top probability it ignores the long tail of a large vocabulary,
 * which spreads probability without making the top token less certain.
 */
export function logitMargin(x: ArrayLike<number>, at = 0, n = x.length - at): number {
  let a = -Infinity;
  let b = -Infinity;
  for (let i = at; i < at + n; i++) {
    const v = x[i];
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) b = v;
  }
  return a - b;
}

/** An exit's confidence by `measure` (what early exit and its calibration compare to thresholds). */
export function exitConfidence(
  measure: ExitMeasure,
  x: ArrayLike<number>,
  at = 0,
  n = x.length - at,
): number {
  return measure === 'margin' ? logitMargin(x, at, n) : topProbability(x, at, n);
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  let max = x[0];
  for (let i = 1; i < x.length; i++)
    if (x[i] > max) {
      max = x[i];
      best = i;
    }
  return best;
}

/** softmax(x) in float64. */
export function softmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const p = new Float64Array(logits.length);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp((logits[i] - max) / temperature);
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return p;
}

/**
 * The distribution the sampler draws from: softmax(logits / T) restricted to top-k, then to the
 * top-p nucleus, renormalised. Temperature 0 is the one-hot of the argmax (greedy).
 */
export function nextTokenProbs(logits: ArrayLike<number>, o: SamplingOptions = {}): Float64Array {
  const t = o.temperature ?? 1;
  if (t === 0) {
    const p = new Float64Array(logits.length);
    p[argmax(logits)] = 1;
    return p;
  }
  const k = o.topK ?? 0;
  const topP = o.topP ?? 1;
  if (k > 0 && k < logits.length && topP >= 1) return topKProbs(logits, t, k);
  const p = softmax(logits, t);
  if ((k === 0 || k >= p.length) && topP >= 1) return p;
  // Ties broken by id so the kept set is deterministic. With top-k only the k best are ordered
  // (a selection, O(V log k)): sorting the whole vocabulary for every drafted and verified
  // position was most of speculative sampling's overhead on a 2,048-token vocabulary.
  const order =
    k > 0 && k < p.length ? topIds(p, k) : Array.from(p.keys()).sort((a, b) => p[b] - p[a] || a - b);
  let keep = k > 0 ? Math.min(k, p.length) : p.length;
  if (topP < 1) {
    let mass = 0;
    for (let i = 0; i < keep; i++) {
      mass += p[order[i]];
      if (mass >= topP) {
        keep = i + 1;
        break;
      }
    }
  }
  const q = new Float64Array(p.length);
  let sum = 0;
  for (let i = 0; i < keep; i++) sum += p[order[i]];
  for (let i = 0; i < keep; i++) q[order[i]] = p[order[i]] / sum;
  return q;
}

/**
 * Top-k alone: the k largest logits and exponentials of those k only. Sampling and speculative sampling call this
 * for every drafted and verified position, and the softmax over the whole vocabulary that the general path needs
 * was a tenth of speculative sampling's time. The sum runs over the kept ids in id order.
 */
function topKProbs(logits: ArrayLike<number>, temperature: number, k: number): Float64Array {
  const { ids, max } = topKSet(logits, k);
  const q = new Float64Array(logits.length);
  let sum = 0;
  // Kept ids at −∞ or NaN (fewer than k usable logits) stay at probability 0.
  for (const id of ids) if (logits[id] > -Infinity) sum += q[id] = Math.exp((logits[id] - max) / temperature);
  for (const id of ids) q[id] /= sum;
  return q;
}

/**
 * The ids of the k largest values of p, largest first, ties by smaller id: the first k of the
 * full sort by (value descending, id ascending), NaN read as −∞.
 */
export function topIds(p: ArrayLike<number>, k: number): number[] {
  const key = (i: number) => (p[i] === p[i] ? p[i] : -Infinity); // NaN ranks with −∞
  return topKSet(p, k).ids.sort((a, b) => key(b) - key(a) || a - b);
}

/** Reused between calls: the candidates topKSet keeps (ids ascending, their values) and a copy to select in. */
let candIds = new Int32Array(0);
let candValues = new Float64Array(0);
let selectIn = new Float64Array(0);

/**
 * The set topIds returns, in id order, and the largest value. One pass keeps candidates above a floor; when
 * max(4k, 64) have gathered, a quickselect finds the k-th best among them, which becomes the floor, and only the best k
 * stay. Most ids then cost one comparison that the branch predictor gets right. (A heap of the best k, updated
 * per id, cost 25–30 µs on a 2,048-token model's logits: most of a sampled token's own work.)
 */
function topKSet(p: ArrayLike<number>, k: number): { ids: number[]; max: number } {
  const n = p.length;
  k = Math.max(0, Math.min(k, n));
  const cap = Math.max(4 * k, 64);
  if (candIds.length < cap) {
    candIds = new Int32Array(cap);
    candValues = new Float64Array(cap);
    selectIn = new Float64Array(cap);
  }
  let count = 0;
  let floor = -Infinity;
  let max = -Infinity;
  for (let i = 0; i < n && k > 0; i++) {
    const v = p[i];
    // An id equal to the floor loses to the k kept (they have smaller ids); NaN and −∞ never enter.
    if (v > floor) {
      if (v > max) max = v;
      candIds[count] = i;
      candValues[count++] = v;
      if (count === cap) {
        floor = keepBest(count, k);
        count = k;
      }
    }
  }
  if (count > k) keepBest(count, k);
  const ids = Array.from(candIds.subarray(0, Math.min(count, k)));
  if (ids.length < k) {
    // Fewer than k values above −∞: the rest are the smallest ids among −∞ and NaN (ties by id).
    const have = new Set(ids);
    for (let i = 0; i < n && ids.length < k; i++) if (!have.has(i)) ids.push(i);
    ids.sort((a, b) => a - b);
  }
  return { ids, max };
}

/** Keeps the best k of the `count` candidates (value, then smaller id) in place, in id order; returns the k-th value. */
function keepBest(count: number, k: number): number {
  selectIn.set(candValues.subarray(0, count));
  const tau = kthLargest(selectIn, count, k);
  let above = 0;
  for (let i = 0; i < count; i++) if (candValues[i] > tau) above++;
  let ties = k - above;
  let o = 0;
  for (let i = 0; i < count; i++) {
    const v = candValues[i];
    if (v > tau || (v === tau && ties-- > 0)) {
      candIds[o] = candIds[i];
      candValues[o++] = v;
    }
  }
  return tau;
}

/** The k-th largest of a[0..n) (1 ≤ k ≤ n; no NaN), reordering a: quickselect, median-of-three pivots. */
function kthLargest(a: Float64Array, n: number, k: number): number {
  const t = k - 1;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const x = a[lo];
    const y = a[(lo + hi) >>> 1];
    const z = a[hi];
    const pivot = x > y ? (y > z ? y : x > z ? z : x) : x > z ? x : y > z ? z : y;
    let i = lo;
    let j = hi;
    // Afterwards a[lo..j] ≥ pivot ≥ a[i..hi], and anything between equals the pivot.
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const s = a[i];
        a[i] = a[j];
        a[j] = s;
        i++;
        j--;
      }
    }
    if (t <= j) hi = j;
    else if (t >= i) lo = i;
    else return pivot;
  }
  return a[t];
}

/** A draw from the distribution p (sums to 1). */
export function sample(p: ArrayLike<number>, rng: Rng): number {
  const u = rng.next();
  let acc = 0;
  let last = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] <= 0) continue;
    acc += p[i];
    last = i;
    if (u < acc) return i;
  }
  return last; // rounding: u fell past the accumulated mass
}

/**
 * One step of speculative sampling (Leviathan et al. 2023): keep the draft token x ~ q with
 * probability min(1, p(x)/q(x)); otherwise return a replacement drawn from norm(max(0, p − q)).
 * The returned token is distributed exactly as p.
 */
export function speculativeAccept(
  x: number,
  p: ArrayLike<number>,
  q: ArrayLike<number>,
  rng: Rng,
): { accepted: boolean; token: number } {
  if (q[x] > 0 && rng.next() * q[x] < p[x]) return { accepted: true, token: x };
  const residual = new Float64Array(p.length);
  let sum = 0;
  for (let i = 0; i < p.length; i++) sum += residual[i] = Math.max(0, p[i] - q[i]);
  if (sum <= 0) return { accepted: false, token: sample(p, rng) }; // p = q: never reached in exact arithmetic
  for (let i = 0; i < p.length; i++) residual[i] /= sum;
  return { accepted: false, token: sample(residual, rng) };
}
