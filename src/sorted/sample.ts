/**
 * P_B, the sampling distribution over the grid (SortedNet §2): uniform by default, or custom
 * weights; optionally the largest and/or smallest sub-model joins every step.
 */
import { z } from 'zod';
import type { Grid, GridEntry } from './grid.js';

export const SamplerOptionsSchema = z
  .object({
    /** Unnormalised weight per grid entry (by index or id); default uniform. */
    weights: z.union([z.array(z.number().min(0)), z.record(z.number().min(0))]),
    alwaysIncludeLargest: z.boolean(),
    alwaysIncludeSmallest: z.boolean(),
  })
  .partial()
  .strict();
export type SamplerOptions = z.infer<typeof SamplerOptionsSchema>;

export class SubModelSampler {
  private readonly cdf: Float64Array;

  constructor(
    readonly grid: Grid,
    readonly options: SamplerOptions,
    private readonly random: () => number,
  ) {
    const w = grid.entries.map((e) => {
      const { weights } = options;
      if (weights === undefined) return 1;
      return Array.isArray(weights) ? weights[e.index] : (weights[e.id] ?? 0);
    });
    if (Array.isArray(options.weights) && options.weights.length !== grid.size) {
      throw new Error(
        `sampler: ${options.weights.length} weights given for a grid of ${grid.size} sub-models`,
      );
    }
    if (w.some((x) => !(x >= 0) || !Number.isFinite(x)))
      throw new Error('sampler: weights must be finite and ≥ 0');
    const total = w.reduce((a, b) => a + b, 0);
    if (!(total > 0))
      throw new Error('sampler: weights sum to 0; give at least one sub-model a positive weight');
    this.cdf = new Float64Array(w.length);
    let acc = 0;
    w.forEach((x, i) => (this.cdf[i] = acc += x / total));
  }

  /** One draw from P_B. */
  drawOne(): GridEntry {
    const u = this.random();
    let lo = 0;
    let hi = this.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    return this.grid.entries[lo];
  }

  /** The gAcc sub-models of one optimizer step; forced ones take slots first. */
  draw(gAcc: number): GridEntry[] {
    if (!Number.isInteger(gAcc) || gAcc < 1)
      throw new Error(`sampler: gAcc ${gAcc} must be a positive integer`);
    const out: GridEntry[] = [];
    if (this.options.alwaysIncludeLargest) out.push(this.grid.largest);
    if (this.options.alwaysIncludeSmallest && out.length < gAcc) out.push(this.grid.smallest);
    while (out.length < gAcc) out.push(this.drawOne());
    return out;
  }
}
