/**
 * The sub-models a server offers, and the ladder the adaptive controller climbs: the grid's
 * accuracy/FLOPs Pareto front, cheapest first. Budgets (`maxFlops`, `maxLatencyMs`) are a scan
 * of this small table (SortedNet §3: nested models need no search).
 */
import type { GridEntry } from '../sorted/grid.js';
import type { SubModel } from '../sorted/submodel.js';
import type { EvalJsonRow } from '../train/eval_json.js';
import { pickSubModel, type Budget, type Candidate } from '../infer/pick.js';

export interface ServedSubModel {
  readonly id: string;
  readonly sub: SubModel;
  readonly params: number;
  readonly flops: number;
  /** Test accuracy from the run's eval.json, when it was evaluated. */
  readonly accuracy?: number;
  /** Batch-1 latency from eval.json (ms), when measured. */
  readonly evalLatencyMs?: number;
}

/** Grid entries joined with the run's evaluation rows (by id). */
export function servedSubModels(
  entries: readonly GridEntry[],
  rows: readonly Pick<EvalJsonRow, 'id' | 'accuracy' | 'latencyMs'>[] = [],
): ServedSubModel[] {
  const byId = new Map(rows.map((r) => [r.id, r]));
  return entries.map((e) => ({
    id: e.id,
    sub: e.sub,
    params: e.cost.params,
    flops: e.cost.flops,
    accuracy: byId.get(e.id)?.accuracy,
    evalLatencyMs: byId.get(e.id)?.latencyMs,
  }));
}

/**
 * The Pareto front, cheapest first: every step up costs more FLOPs and buys accuracy. Without
 * accuracies every sub-model is on it, ordered by FLOPs (in a sorted network more compute is the
 * better sub-model).
 */
export function paretoLadder(subs: readonly ServedSubModel[]): ServedSubModel[] {
  if (subs.length === 0) throw new Error('serve: no sub-models to serve');
  const byFlops = [...subs].sort((a, b) => a.flops - b.flops || (b.accuracy ?? 0) - (a.accuracy ?? 0));
  if (byFlops.some((s) => s.accuracy === undefined)) return byFlops;
  const ladder: ServedSubModel[] = [];
  for (const s of byFlops) {
    const best = ladder[ladder.length - 1];
    if (!best || s.accuracy! > best.accuracy!) ladder.push(s);
  }
  return ladder;
}

/**
 * The most accurate sub-model within a request's budget; `predictMs` gives each sub-model's
 * expected latency now (queue included). Null when none fits.
 */
export function chooseForBudget(
  subs: readonly ServedSubModel[],
  budget: Pick<Budget, 'maxFlops' | 'maxLatencyMs'>,
  predictMs: (s: ServedSubModel) => number,
): ServedSubModel | null {
  const candidates: Candidate[] = subs.map((s) => ({
    id: s.id,
    params: s.params,
    flops: s.flops,
    accuracy: s.accuracy,
    latencyMs: predictMs(s),
  }));
  const best = pickSubModel(candidates, { maxFlops: budget.maxFlops, maxLatencyMs: budget.maxLatencyMs });
  return best ? subs.find((s) => s.id === best.id)! : null;
}
