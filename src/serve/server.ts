/**
 * The inference server: fastify routes with schemas, a micro-batcher in front of the model, and
 * (with a p99 target) the adaptive controller choosing the default sub-model.
 *
 *   POST /predict   JSON {inputs, sub?, maxFlops?, maxLatencyMs?, probabilities?} or a float32 body
 *                   with an `x-shape` header (budgets in the query); answers name the sub-model
 *   GET  /models    sub-models with params, FLOPs, accuracy, measured batch times
 *   GET  /health    liveness, the active sub-model, the queue
 *   GET  /metrics   Prometheus text
 * A language-model run gets POST /generate instead of /predict (src/serve/generate.ts).
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createApp, type AppOptions } from './app.js';
import { createLmServer } from './generate.js';
import { Transformer } from '../models/transformer.js';
import type { BpeTokenizer } from '../tokenizer/bpe.js';
import type { SortedModel } from '../models/model.js';
import type { Preprocess } from '../io/checkpoint_codec.js';
import { parseSubModel, subModelId, type SubModel } from '../sorted/submodel.js';
import { MicroBatcher } from './batcher.js';
import { AdaptiveController, BatchTimes, predictLatency, type Switch } from './controller.js';
import { chooseForBudget, paretoLadder, type ServedSubModel } from './ladder.js';
import { ServeMetrics } from './metrics.js';
import {
  HttpError,
  SHAPE_HEADER,
  describeInput,
  parseShape,
  samplesFromBinary,
  samplesFromJson,
  type Samples,
} from './inputs.js';
import { ClassifierRunner, inputSpecOf, type Probabilities } from './runner.js';
import {
  errorResponse,
  healthResponse,
  modelsResponse,
  predictBody,
  predictQuery,
  predictResponse,
} from './schemas.js';

export interface ServeOptions extends AppOptions {
  /** With a target the controller adapts the default sub-model; without, it stays fixed. */
  targetP99Ms?: number;
  /** The default sub-model in fixed mode (default: the most accurate). */
  fixedSub?: string;
  windowMs?: number;
  maxBatch?: number;
  /** Most samples queued before requests are refused with 503. */
  maxQueue?: number;
  /** Controller options beyond the target (hysteresis, windows). */
  controller?: { holdMs?: number; upFraction?: number; p99WindowMs?: number; minSamples?: number };
}

export interface ServedModel {
  model: SortedModel;
  subs: ServedSubModel[];
  preprocess?: Preprocess;
  /** Language models: the run's tokenizer, for text prompts. */
  tokenizer?: BpeTokenizer;
}

export interface Server {
  app: FastifyInstance;
  /** The default sub-model now. */
  active(): string;
  /** Switches the controller made, oldest first. */
  switches: Switch[];
  /** Listens on `host` (default 127.0.0.1: loopback only unless told otherwise); resolves to the URL. */
  listen(port: number, host?: string): Promise<string>;
  /** Stop accepting, answer every request already in, release timers. */
  shutdown(): Promise<void>;
}

interface PredictBody {
  inputs: unknown[];
  sub?: string;
  maxFlops?: number;
  maxLatencyMs?: number;
  probabilities?: boolean;
}

type PredictQuery = Partial<Record<'sub' | 'maxFlops' | 'maxLatencyMs' | 'probabilities', string>>;

/** Builds the server for `served` (not listening yet: `app.listen`, or `app.inject` in tests). */
export function createServer(served: ServedModel, opts: ServeOptions = {}): Server {
  if (served.model instanceof Transformer && served.model.config.task === 'lm')
    return createLmServer(served.model, served.tokenizer, opts);
  const windowMs = opts.windowMs ?? 2;
  const maxBatch = opts.maxBatch ?? 32;
  const spec = inputSpecOf(served.model, served.preprocess);
  const classes = served.preprocess?.classes;
  const { app, isClosing } = createApp(opts, 'POST /predict, GET /models, GET /health, GET /metrics');
  const log: FastifyBaseLogger = app.log;

  // Which sub-models run at all: a forward pass each (BatchNorm statistics present, shapes fit),
  // timed at batch 1 and at the full batch for the controller's predictions.
  const runner = new ClassifierRunner(
    served.model,
    spec,
    new Map(served.subs.map((s) => [s.id, s.sub])),
    served.preprocess,
  );
  const times = new BatchTimes(maxBatch);
  const batchMs = new Map<string, { one: number; full: number }>();
  const subs: ServedSubModel[] = [];
  for (const s of served.subs) {
    try {
      const one = runner.timeBatch(s.id, 1);
      const full = runner.timeBatch(s.id, maxBatch);
      times.set(s.id, one, full);
      batchMs.set(s.id, { one, full });
      subs.push(s);
    } catch (e) {
      log.warn(`sub-model ${s.id} is not served: ${(e as Error).message}`);
    }
  }
  if (subs.length === 0) throw new Error('serve: no sub-model of this run can run (see the warnings)');
  const byId = new Map(subs.map((s) => [s.id, s]));
  // Specs that build the same network name the same sub-model ('full' is 'depth=6,width=1').
  const shapeOf = (sub: SubModel) => JSON.stringify(served.model.shrink(sub));
  const byShape = new Map(subs.map((s) => [shapeOf(s.sub), s]));
  const gridDims = new Set(subs.flatMap((s) => Object.keys(s.sub)));
  /** The served sub-model a spec names, or undefined. Throws when the spec does not parse or fit. */
  const lookup = (text: string, where: string): ServedSubModel | undefined => {
    const sub = parseSubModel(text, where);
    const hit = byId.get(subModelId(sub));
    if (hit) return hit;
    // Only the grid's own dimensions: a ResNet ignores 'heads', but a request naming it is a mistake.
    if (Object.keys(sub).some((k) => !gridDims.has(k))) return undefined;
    served.model.validate(sub);
    return byShape.get(shapeOf(sub));
  };
  const ladder = paretoLadder(subs);
  let fixed = ladder[ladder.length - 1].id;
  if (opts.fixedSub !== undefined) {
    const hit = lookup(opts.fixedSub, '--sub');
    if (!hit) throw new Error(`serve: sub-model '${opts.fixedSub}' is not in this run's grid`);
    fixed = hit.id;
  }

  const metrics = new ServeMetrics(
    subs.map((s) => s.id),
    fixed,
  );
  const switches: Switch[] = [];
  const controller =
    opts.targetP99Ms !== undefined
      ? new AdaptiveController(
          ladder.map((s) => s.id),
          times,
          { targetP99Ms: opts.targetP99Ms, windowMs, maxBatch, ...opts.controller },
          (s) => {
            switches.push(s);
            metrics.switches.inc({ direction: s.direction });
            metrics.setActive(s.from, s.to);
            log.info({ switch: s }, `sub-model ${s.from} → ${s.to} (${s.direction}): ${s.reason}`);
          },
        )
      : null;
  const active = () => controller?.active ?? fixed;

  const tick = () => {
    metrics.queue.set(batcher.queuedSamples);
    controller?.tick(performance.now(), batcher.queuedSamples);
  };
  const batcher = new MicroBatcher<Samples, Probabilities>(
    { windowMs, maxBatch, maxQueue: opts.maxQueue ?? 64 * maxBatch },
    (id, jobs) => runner.run(id, jobs),
    active,
    (r) => {
      metrics.samples.inc({ sub: r.sub }, r.samples);
      metrics.batchSize.observe(r.samples);
      times.observe(r.sub, r.samples, r.ms);
      tick();
    },
  );
  const ticker = setInterval(tick, 50);
  ticker.unref();

  const samplesOf = new WeakMap<FastifyRequest, number>();
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
    if (route === '/predict' && reply.statusCode === 200)
      controller?.observe(reply.elapsedTime, performance.now(), samplesOf.get(req) ?? 1);
  });

  /** The sub-model for a request: an explicit one, the best within a budget, or null (the default at dispatch). */
  function subFor(budget: { sub?: string; maxFlops?: number; maxLatencyMs?: number }): string | null {
    if (budget.sub !== undefined) {
      if (budget.maxFlops !== undefined || budget.maxLatencyMs !== undefined)
        throw new HttpError(400, "give either 'sub' or a budget (maxFlops, maxLatencyMs), not both");
      let hit: ServedSubModel | undefined;
      try {
        hit = lookup(budget.sub, 'sub');
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
    const queue = batcher.queuedSamples;
    const predict = (s: ServedSubModel) => predictLatency(times, s.id, queue, windowMs);
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
      let budget: { sub?: string; maxFlops?: number; maxLatencyMs?: number };
      let wantProbabilities: boolean;
      const fromQuery = {
        sub: q.sub,
        maxFlops: number(q.maxFlops),
        maxLatencyMs: number(q.maxLatencyMs),
      };
      if (Buffer.isBuffer(req.body)) {
        samples = samplesFromBinary(req.body, parseShape(req.headers[SHAPE_HEADER]), spec, maxBatch);
        budget = fromQuery;
        wantProbabilities = q.probabilities === 'true';
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
      }
      if (
        (budget.maxFlops !== undefined && !(budget.maxFlops > 0)) ||
        (budget.maxLatencyMs !== undefined && !(budget.maxLatencyMs > 0))
      )
        throw new HttpError(400, 'maxFlops and maxLatencyMs must be positive numbers');
      const fixedSub = subFor(budget);
      samplesOf.set(req, samples.n);
      const { output, sub } = await batcher.submit(samples, samples.n, fixedSub);
      metrics.queue.set(batcher.queuedSamples);
      reply.header('x-sub-model', sub);
      return {
        sub,
        flops: byId.get(sub)!.flops,
        predictions: output.map((p) => {
          let best = 0;
          for (let c = 1; c < p.length; c++) if (p[c] > p[best]) best = c;
          return { class: best, label: classes?.[best], probability: p[best] };
        }),
        probabilities: wantProbabilities ? output.map((p) => Array.from(p)) : undefined,
      };
    },
  );

  app.get('/models', { schema: { response: { 200: modelsResponse } } }, async () => ({
    family: served.model.family,
    input: describeInput(spec),
    active: active(),
    adaptive: opts.targetP99Ms !== undefined ? { targetP99Ms: opts.targetP99Ms } : null,
    subModels: subs.map((s) => ({
      id: s.id,
      params: s.params,
      flops: s.flops,
      accuracy: s.accuracy ?? null,
      evalLatencyMs: s.evalLatencyMs ?? null,
      batchMs: batchMs.get(s.id),
      onLadder: ladder.includes(s),
    })),
  }));

  const started = performance.now();
  app.get('/health', { schema: { response: { 200: healthResponse } } }, async () => ({
    status: 'ok',
    active: active(),
    queue: batcher.queuedSamples,
    uptimeSeconds: (performance.now() - started) / 1000,
  }));

  app.get('/metrics', async (_req, reply) => {
    metrics.queue.set(batcher.queuedSamples);
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.addHook('onClose', async () => {
    await batcher.drain();
    batcher.close();
    clearInterval(ticker);
  });

  return {
    app,
    active,
    switches,
    listen: (port, host = '127.0.0.1') => app.listen({ port, host }),
    shutdown: () => isClosing.close(),
  };
}

/** SIGTERM/SIGINT: drain (every request already in is answered), then exit. */
export function exitOnSignals(server: Server, log: (line: string) => void = console.log): void {
  const stop = (signal: string) => {
    log(`${signal}: draining in-flight requests, then exiting`);
    server.shutdown().then(
      () => process.exit(0),
      (e) => {
        log(`shutdown failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
