/**
 * POST /predict: JSON {inputs, sub?, maxFlops?, maxLatencyMs?, probabilities?}, or a float32 body
 * with an `x-shape` header (budgets in the query). The samples queue in the micro-batcher; the
 * answer names the sub-model that ran.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { MicroBatcher } from '../batcher.js';
import type { SubModelChooser, RequestBudget } from '../choose.js';
import {
  HttpError,
  SHAPE_HEADER,
  checkFiniteOutput,
  parseShape,
  samplesFromBinary,
  samplesFromJson,
  type InputSpec,
  type Samples,
} from '../inputs.js';
import type { ServeMetrics } from '../metrics.js';
import type { Probabilities } from '../runner.js';
import { errorResponse, predictBody, predictQuery, predictResponse } from '../schemas.js';

interface PredictBody {
  inputs: unknown[];
  sub?: string;
  maxFlops?: number;
  maxLatencyMs?: number;
  probabilities?: boolean;
}

type PredictQuery = Partial<Record<'sub' | 'maxFlops' | 'maxLatencyMs' | 'probabilities', string>>;

export interface PredictContext {
  spec: InputSpec;
  maxBatch: number;
  classes?: readonly string[];
  chooser: SubModelChooser;
  batcher: MicroBatcher<Samples, Probabilities>;
  metrics: ServeMetrics;
  /** Called as a request's samples are queued (the controller's arrival rate). */
  onQueued?: (samples: number) => void;
  /** What a request waited unread while a batch ran (ms), for the latency the controller sees. */
  hiddenOf: WeakMap<FastifyRequest, number>;
}

export function predictRoute(app: FastifyInstance, ctx: PredictContext): void {
  const { spec, maxBatch, classes, chooser, batcher, metrics, onQueued, hiddenOf } = ctx;
  app.post<{ Body: PredictBody | Buffer; Querystring: PredictQuery }>(
    '/predict',
    {
      schema: {
        // Per content type: the JSON schema must not be applied to a binary body.
        body: {
          content: {
            'application/json': { schema: predictBody(maxBatch) },
            'application/octet-stream': { schema: {} },
          },
        },
        querystring: predictQuery,
        response: { 200: predictResponse, '4xx': errorResponse, '5xx': errorResponse },
      },
    },
    async (
      req: FastifyRequest<{ Body: PredictBody | Buffer; Querystring: PredictQuery }>,
      reply: FastifyReply,
    ) => {
      const q = req.query;
      const number = (v: string | undefined) => (v === undefined ? undefined : Number(v));
      let samples: Samples;
      let budget: RequestBudget;
      let wantProbabilities: boolean;
      let field: (i: number) => string;
      const fromQuery = {
        sub: q.sub,
        maxFlops: number(q.maxFlops),
        maxLatencyMs: number(q.maxLatencyMs),
      };
      if (Buffer.isBuffer(req.body)) {
        samples = samplesFromBinary(req.body, parseShape(req.headers[SHAPE_HEADER]), spec, maxBatch);
        budget = fromQuery;
        wantProbabilities = q.probabilities === 'true';
        field = (i) => `sample ${i}`;
      } else {
        const b = req.body;
        for (const k of ['sub', 'maxFlops', 'maxLatencyMs', 'probabilities'] as const) {
          if (b[k] !== undefined && q[k] !== undefined)
            throw new HttpError(400, `'${k}' is given in both the body and the query; give it once`);
        }
        samples = samplesFromJson(b.inputs, spec);
        budget = {
          sub: b.sub ?? fromQuery.sub,
          maxFlops: b.maxFlops ?? fromQuery.maxFlops,
          maxLatencyMs: b.maxLatencyMs ?? fromQuery.maxLatencyMs,
        };
        wantProbabilities = b.probabilities ?? q.probabilities === 'true';
        field = (i) => `inputs[${i}]`;
      }
      if (
        (budget.maxFlops !== undefined && !(budget.maxFlops > 0)) ||
        (budget.maxLatencyMs !== undefined && !(budget.maxLatencyMs > 0))
      )
        throw new HttpError(400, 'maxFlops and maxLatencyMs must be positive numbers');
      const fixedSub = chooser.forRequest(budget);
      const queued = batcher.submit(samples, samples.n, fixedSub);
      onQueued?.(samples.n);
      const { output, sub, hiddenMs } = await queued;
      hiddenOf.set(req, hiddenMs);
      metrics.queue.set(batcher.queuedSamples);
      // Nothing non-finite reaches an answer: it would be a wrong label, or a 500 when serialised.
      checkFiniteOutput(output, samples, field);
      reply.header('x-sub-model', sub);
      return {
        sub,
        flops: chooser.get(sub)!.flops,
        predictions: output.map((p) => {
          let best = 0;
          for (let c = 1; c < p.length; c++) if (p[c] > p[best]) best = c;
          return { class: best, label: classes?.[best], probability: p[best] };
        }),
        probabilities: wantProbabilities ? output.map((p) => Array.from(p)) : undefined,
      };
    },
  );
}
