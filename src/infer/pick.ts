/**
 * Search-free selection (SortedNet §3): sub-models are nested, so the choice for a budget is a
 * scan of a small table for the best one that fits — no search, no retraining.
 */
import type { EvalRow } from '../train/evaluate.js';
import type { GridEntry } from '../sorted/grid.js';

export interface Budget {
  maxFlops?: number;
  maxParams?: number;
  maxLatencyMs?: number;
}

export interface Candidate {
  id: string;
  params: number;
  flops: number;
  accuracy?: number;
  latencyMs?: number;
}

export function candidatesFrom(rows: readonly EvalRow[] | readonly GridEntry[]): Candidate[] {
  return rows.map((r) => ('cost' in r ? { id: r.id, params: r.cost.params, flops: r.cost.flops } : { ...r }));
}

/**
 * The best candidate within the budget: highest measured accuracy when known, else the largest
 * FLOPs (in a sorted network more compute is the better sub-model). Null when nothing fits.
 */
export function pickSubModel(candidates: readonly Candidate[], budget: Budget): Candidate | null {
  const limits = Object.entries(budget).filter(([, v]) => v !== undefined);
  if (limits.length === 0)
    throw new Error('pick: give a budget: --max-flops, --max-params or --max-latency-ms');
  for (const [k, v] of limits)
    if (!(Number(v) > 0)) throw new Error(`pick: ${k} must be a positive number, got ${v}`);
  if (budget.maxLatencyMs !== undefined && candidates.some((c) => c.latencyMs === undefined)) {
    throw new Error('pick: --max-latency-ms needs measured latencies; run `sortednet eval --run DIR` first');
  }
  const fits = candidates.filter(
    (c) =>
      (budget.maxFlops === undefined || c.flops <= budget.maxFlops) &&
      (budget.maxParams === undefined || c.params <= budget.maxParams) &&
      (budget.maxLatencyMs === undefined || (c.latencyMs ?? Infinity) <= budget.maxLatencyMs),
  );
  let best: Candidate | null = null;
  for (const c of fits) {
    const better =
      best === null ||
      (c.accuracy !== undefined && best.accuracy !== undefined
        ? c.accuracy > best.accuracy || (c.accuracy === best.accuracy && c.flops < best.flops)
        : c.flops > best.flops);
    if (better) best = c;
  }
  return best;
}
