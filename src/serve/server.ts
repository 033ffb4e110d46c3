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
import { Transformer } from '../models/transformer.js';
import { createClassifierServer } from './classifier.js';
import { createLmServer } from './generate.js';
import type { InferenceWorker } from './inference_worker.js';
import type { ServedModel, ServeOptions, Server } from './types.js';

export type { ServedModel, ServeOptions, Server } from './types.js';

/** A language model (served on POST /generate) rather than a classifier? */
export function generates(served: ServedModel): boolean {
  return served.model instanceof Transformer && served.model.config.task === 'lm';
}

/**
 * Builds the server for `served` (not listening yet: `app.listen`, or `app.inject` in tests). A
 * classifier runs its batches on `worker` when one is given (started on the same run), else on the
 * event loop.
 */
export function createServer(served: ServedModel, opts: ServeOptions = {}, worker?: InferenceWorker): Server {
  if (generates(served)) {
    if (worker)
      throw new Error('serve: a language model decodes on the event loop; start no inference thread for it');
    return createLmServer(served.model as Transformer, served.tokenizer, opts, served.trainedContext);
  }
  return createClassifierServer(served, opts, worker);
}

/**
 * SIGTERM/SIGINT: stop accepting, finish every accepted request and stream (up to the grace
 * period), then resolve with the exit code: 0 when nothing was dropped or cut short, 1 otherwise.
 */
export function drainOnSignals(server: Server, log: (line: string) => void = console.log): Promise<number> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      log(`${signal}: draining in-flight requests, then exiting`);
      server.shutdown().then(
        (r) => {
          log(
            `drained: ${r.finished} finished, ${r.refused} refused while draining (503), ` +
              `${r.cutStreams} streams cut at the grace period, ${r.dropped} requests dropped`,
          );
          resolve(r.dropped === 0 && r.cutStreams === 0 ? 0 : 1);
        },
        (e) => {
          log(`shutdown failed: ${(e as Error).message}`);
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** `drainOnSignals`, then exit the process with its code. */
export function exitOnSignals(server: Server, log: (line: string) => void = console.log): void {
  void drainOnSignals(server, log).then((code) => process.exit(code));
}
