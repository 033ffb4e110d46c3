/**
 * A tiny seeded random number generator, so that shuffling, augmentation, splits and weight
 * initialisation repeat exactly from a seed. Math.random cannot be seeded.
 */

/**
 * A seed as 32 bits of generator state. Every safe integer (|seed| ≤ 2^53 − 1) is accepted: those
 * in [−2^31, 2^32) keep their long-standing state (seed mod 2^32, so earlier runs repeat), larger
 * ones are hashed from both 32-bit halves (a plain `seed >>> 0` would keep only the low half).
 * Anything else (fractions, 1e20, NaN) cannot be told apart from its neighbours and is refused.
 */
export function seed32(seed: number, where = 'seed'): number {
  if (!Number.isSafeInteger(seed)) {
    throw new Error(
      `${where}: ${seed} is not a usable seed; give an integer between -${Number.MAX_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  if (seed >= -(2 ** 31) && seed < 2 ** 32) return seed >>> 0;
  const low = seed >>> 0; // ToUint32 is exact modulo 2^32 for any safe integer
  const high = Math.floor((seed - low) / 2 ** 32) >>> 0;
  return mix32(mix32(low ^ 0x9e3779b9) ^ high);
}

/** murmur3's 32-bit finaliser: every input bit affects every output bit. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The seed of stream `index` (a step, an epoch) derived from a run's seed: `seed·multiplier + index`
 * modulo 2^32, computed exactly for every accepted seed (in floating point the index vanishes once
 * seed·multiplier passes 2^53, and every step would draw the same sub-models).
 */
export function streamSeed(seed: number, multiplier: number, index: number): number {
  return (Math.imul(seed32(seed), multiplier) + index) >>> 0;
}

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal, mean 0 and variance 1. */
  normal(): number;
}

/**
 * mulberry32 (Tommy Ettinger): 32 bits of state, passes PractRand to 2^32 outputs; plenty for
 * shuffles and initialisation, and small enough to read.
 *
 * ```ts
 * const rng = createRng(42);
 * rng.next(); // same value on every machine for seed 42
 * ```
 */
export function createRng(seed: number): Rng {
  let state = seed32(seed, 'createRng');

  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  return {
    next,
    int(n: number): number {
      if (!Number.isInteger(n) || n <= 0) throw new Error(`Rng.int: n must be a positive integer, got ${n}`);
      return Math.floor(next() * n);
    },
    normal(): number {
      // Box–Muller; 1 - next() lies in (0, 1], so the log is finite.
      const u = 1 - next();
      const v = next();
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    },
  };
}

/** A random permutation of 0..n-1 (Fisher–Yates). */
export function permutation(n: number, rng: Rng): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const swap = order[i];
    order[i] = order[j];
    order[j] = swap;
  }
  return order;
}
