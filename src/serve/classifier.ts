/**
 * The classifier server: the run's DeployedModel behind a micro-batcher, each sub-model timed at
 * batch 1 and at the full batch, and (with a p99 target) the adaptive controller choosing the
 * default sub-model. Batches run on the event loop, or on an inference thread when one is given
 * (./inference_worker.ts; `sortednet serve` starts one). Routes live in ./routes.
 */
import { performance } from 'node:perf_hooks';
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import { createApp } from './app.js';
import { MicroBatcher } from './batcher.js';
import { SubModelChooser } from './choose.js';
import { AdaptiveController, BatchTimes, type Switch } from './controller.js';
import { bodyLimitFor, type Samples } from './inputs.js';
import type { InferenceWorker } from './inference_worker.js';
import { paretoLadder, type ServedSubModel } from './ladder.js';
import { ServeMetrics } from './metrics.js';
import { deployedOf, joinJobs, runJobs, splitRows, timeSubModel, type Probabilities } from './runner.js';
import { modelsRoute } from './routes/models.js';
import { predictRoute } from './routes/predict.js';
import { statusRoutes } from './routes/status.js';
import type { ServedModel, ServeOptions, Server } from './types.js';

/**
 * A batch on the inference thread running longer than this is stuck (a kernel that never returns):
 * `/health` then answers 503 so that a supervisor restarts the server. A batch on the event loop
 * needs no such check: a stuck one stops `/health` from answering at all.
 */
const STUCK_BATCH_MS = 10_000;

/** The queue deadline: `maxWaitMs` when given and not 0; none by default (as Triton's queue policy). */
export function maxWaitOf(opts: ServeOptions): number | undefined {
  return opts.maxWaitMs === 0 ? undefined : opts.maxWaitMs;
}

export function createClassifierServer(
  served: ServedModel,
  opts: ServeOptions = {},
  /** Runs the batches on its thread (started on the same run); the server closes it. */
  worker?: InferenceWorker,
): Server {
  const windowMs = opts.windowMs ?? 2;
  const maxBatch = opts.maxBatch ?? 32;
  const deployed = deployedOf(served);
  const spec = deployed.inputSpec;
  const { app, lifecycle } = createApp(
    opts,
    'POST /predict, GET /models, GET /health, GET /metrics',
    bodyLimitFor(spec, maxBatch),
  );
  const log: FastifyBaseLogger = app.log;

  // Which sub-models run at all: a forward pass each (BatchNorm statistics present, shapes fit),
  // timed at batch 1 and at the full batch for the controller's predictions.
  const times = new BatchTimes(maxBatch);
  const batchMs = new Map<string, { one: number; full: number }>();
  const subs: ServedSubModel[] = [];
  const timed = new Map(worker?.timings.map((t) => [t.id, t]));
  for (const s of served.subs) {
    try {
      let one: number, full: number;
      if (worker) {
        const t = timed.get(s.id);
        if (!t) throw new Error('the inference thread did not load it');
        if ('error' in t) throw new Error(t.error);
        ({ one, full } = t);
      } else ({ one, full } = timeSubModel(deployed, s.id, s.sub, maxBatch));
      times.set(s.id, one, full);
      batchMs.set(s.id, { one, full });
      subs.push(s);
    } catch (e) {
      log.warn(`sub-model ${s.id} is not served: ${(e as Error).message}`);
    }
  }
  if (subs.length === 0) throw new Error('serve: no sub-model of this run can run (see the warnings)');
  const ladder = paretoLadder(subs);
  const chooser: SubModelChooser = new SubModelChooser(
    served.model,
    subs,
    ladder,
    times,
    windowMs,
    () => batcher.queuedSamples,
  );
  let fixed = ladder[ladder.length - 1].id;
  if (opts.fixedSub !== undefined) {
    const hit = chooser.lookup(opts.fixedSub, '--sub');
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
    controller?.tick(performance.now(), batcher.queuedSamples, batcher.oldestWaitMs);
  };
  // The event loop's busy time outside batches, per sample answered: what each request costs the
  // server besides its model (HTTP, parsing, the answer), measured as the machine runs now.
  let loopAt = performance.eventLoopUtilization();
  let batchMsSince = 0;
  let samplesSince = 0;
  const measureOverhead = () => {
    // With an inference thread, the event loop's work runs beside the batches, not between them.
    if (worker || samplesSince < 8) return;
    const elu = performance.eventLoopUtilization(loopAt);
    loopAt = performance.eventLoopUtilization();
    times.observeOverhead(Math.max(0, elu.active - batchMsSince) / samplesSince);
    batchMsSince = 0;
    samplesSince = 0;
  };
  const batcher: MicroBatcher<Samples, Probabilities> = new MicroBatcher<Samples, Probabilities>(
    { windowMs, maxBatch, maxQueue: opts.maxQueue ?? 64 * maxBatch, maxWaitMs: maxWaitOf(opts) },
    worker
      ? async (id, jobs) => {
          const { data, n } = joinJobs(spec, jobs);
          return splitRows(await worker.run(id, data, n), jobs);
        }
      : (id, jobs) => runJobs(deployed, id, chooser.get(id)!.sub, jobs),
    // The controller decides as each batch is dispatched: the queue then holds what arrived while
    // the last batch ran (read just now), the wait a p99 is made of.
    () => {
      tick();
      return active();
    },
    (r) => {
      metrics.samples.inc({ sub: r.sub }, r.samples);
      metrics.batchSize.observe(r.samples);
      times.observe(r.sub, r.samples, r.ms);
      batchMsSince += r.ms;
      samplesSince += r.samples;
    },
  );
  const ticker = setInterval(() => {
    measureOverhead();
    tick();
  }, 50);
  ticker.unref();

  const hiddenOf = new WeakMap<FastifyRequest, number>();
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
    if (route === '/predict' && reply.statusCode === 200)
      controller?.observe(reply.elapsedTime + (hiddenOf.get(req) ?? 0), performance.now());
  });

  predictRoute(app, {
    spec,
    maxBatch,
    classes: served.preprocess?.classes,
    chooser,
    batcher,
    metrics,
    onQueued: (n) => controller?.arrive(performance.now(), n),
    hiddenOf,
  });
  modelsRoute(app, {
    model: served.model,
    spec,
    subs,
    ladder,
    batchMs,
    targetP99Ms: opts.targetP99Ms,
    active,
  });
  statusRoutes(app, {
    metrics,
    active,
    queue: () => batcher.queuedSamples,
    failure: () => {
      if (!worker) return null;
      const stuck = batcher.runningMs;
      return (
        worker.failure ??
        (stuck > STUCK_BATCH_MS
          ? `a batch has run for ${(stuck / 1000).toFixed(0)} s on the inference thread`
          : null)
      );
    },
  });

  app.addHook('onClose', async () => {
    // By now every accepted request was answered or the grace period is over: a batch still running
    // on the thread is stuck, and closing the thread rejects it.
    await Promise.race([batcher.drain(), new Promise((r) => setTimeout(r, 1000).unref())]);
    batcher.close();
    clearInterval(ticker);
    await worker?.close();
  });

  return {
    app,
    active,
    switches,
    listen: (port, host = '127.0.0.1') => app.listen({ port, host }),
    shutdown: (graceMs) => lifecycle.shutdown(graceMs),
  };
}
