/**
 * Which sub-model a request runs: one it names (by id or by an equivalent spec), the most
 * accurate one predicted to fit its budget, or null for the server's default at dispatch.
 */
import type { SortedModel } from '../models/model.js';
import { parseSubModel, subModelId, type SubModel } from '../sorted/submodel.js';
import { predictLatency, type BatchTimes } from './controller.js';
import { HttpError } from './inputs.js';
import { chooseForBudget, type ServedSubModel } from './ladder.js';

export interface RequestBudget {
  sub?: string;
  maxFlops?: number;
  maxLatencyMs?: number;
}

export class SubModelChooser {
  private readonly byId: Map<string, ServedSubModel>;
  private readonly byShape: Map<string, ServedSubModel>;
  private readonly gridDims: Set<string>;

  constructor(
    private readonly model: SortedModel,
    readonly subs: readonly ServedSubModel[],
    /** The accuracy/FLOPs ladder, cheapest first. */
    readonly ladder: readonly ServedSubModel[],
    private readonly times: BatchTimes,
    private readonly windowMs: number,
    /** Samples waiting now: latency budgets are predicted with the queue included. */
    private readonly queued: () => number,
  ) {
    this.byId = new Map(subs.map((s) => [s.id, s]));
    // Specs that build the same network name the same sub-model ('full' is 'depth=6,width=1').
    this.byShape = new Map(subs.map((s) => [this.shapeOf(s.sub), s]));
    this.gridDims = new Set(subs.flatMap((s) => Object.keys(s.sub)));
  }

  private shapeOf(sub: SubModel): string {
    return JSON.stringify(this.model.shrink(sub));
  }

  get(id: string): ServedSubModel | undefined {
    return this.byId.get(id);
  }

  /** The served sub-model a spec names, or undefined. Throws when the spec does not parse or fit. */
  lookup(text: string, where: string): ServedSubModel | undefined {
    const sub = parseSubModel(text, where);
    const hit = this.byId.get(subModelId(sub));
    if (hit) return hit;
    // Only the grid's own dimensions: a ResNet ignores 'heads', but a request naming it is a mistake.
    if (Object.keys(sub).some((k) => !this.gridDims.has(k))) return undefined;
    this.model.validate(sub);
    return this.byShape.get(this.shapeOf(sub));
  }

  /** The sub-model for a request: an explicit one, the best within a budget, or null (the default at dispatch). */
  forRequest(budget: RequestBudget): string | null {
    const { subs, ladder } = this;
    if (budget.sub !== undefined) {
      if (budget.maxFlops !== undefined || budget.maxLatencyMs !== undefined)
        throw new HttpError(400, "give either 'sub' or a budget (maxFlops, maxLatencyMs), not both");
      let hit: ServedSubModel | undefined;
      try {
        hit = this.lookup(budget.sub, 'sub');
      } catch (e) {
        throw new HttpError(400, (e as Error).message);
      }
      if (!hit)
        throw new HttpError(
          400,
          `unknown sub-model '${budget.sub}'; this server has ${subs.length} (GET /models), e.g. '${ladder[0].id}'`,
        );
      return hit.id;
    }
    if (budget.maxFlops === undefined && budget.maxLatencyMs === undefined) return null;
    const queue = this.queued();
    const predict = (s: ServedSubModel) => predictLatency(this.times, s.id, queue, this.windowMs);
    const withinFlops = subs.filter((s) => budget.maxFlops === undefined || s.flops <= budget.maxFlops);
    if (withinFlops.length === 0) {
      const min = ladder[0];
      throw new HttpError(
        422,
        `no sub-model within maxFlops=${budget.maxFlops}; the smallest, '${min.id}', needs ${min.flops} FLOPs per sample`,
      );
    }
    // A latency budget no sub-model is predicted to meet gets the fastest one within the FLOPs.
    const best = chooseForBudget(withinFlops, budget, predict);
    return (best ?? withinFlops.reduce((a, b) => (predict(a) <= predict(b) ? a : b))).id;
  }
}
