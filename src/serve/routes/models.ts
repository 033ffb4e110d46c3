/** GET /models: the served sub-models with params, FLOPs, accuracy and measured batch times. */
import type { FastifyInstance } from 'fastify';
import type { SortedModel } from '../../models/model.js';
import { describeInput, type InputSpec } from '../inputs.js';
import type { ServedSubModel } from '../ladder.js';
import { modelsResponse } from '../schemas.js';

export interface ModelsContext {
  model: SortedModel;
  spec: InputSpec;
  subs: readonly ServedSubModel[];
  ladder: readonly ServedSubModel[];
  batchMs: ReadonlyMap<string, { one: number; full: number }>;
  targetP99Ms?: number;
  active(): string;
}

export function modelsRoute(app: FastifyInstance, ctx: ModelsContext): void {
  app.get('/models', { schema: { response: { 200: modelsResponse } } }, async () => ({
    family: ctx.model.family,
    input: describeInput(ctx.spec),
    active: ctx.active(),
    adaptive: ctx.targetP99Ms !== undefined ? { targetP99Ms: ctx.targetP99Ms } : null,
    subModels: ctx.subs.map((s) => ({
      id: s.id,
      params: s.params,
      flops: s.flops,
      accuracy: s.accuracy ?? null,
      evalLatencyMs: s.evalLatencyMs ?? null,
      batchMs: ctx.batchMs.get(s.id),
      onLadder: ctx.ladder.includes(s),
    })),
  }));
}
