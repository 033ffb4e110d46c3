/**
 * A tiny seeded random number generator, so that shuffling, augmentation, splits and weight
 * initialisation repeat exactly from a seed. Math.random cannot be seeded.
 */

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
  if (!Number.isFinite(seed)) throw new Error(`createRng: seed must be a finite number, got ${seed}`);
  let state = Math.trunc(seed) >>> 0;

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
