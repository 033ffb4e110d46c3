/** `sortednet serve`: the adaptive HTTP inference server for a trained run (src/serve/). */
import { initEngine, parseBackend } from '../../engine/backend.js';
import { trainedContextOf } from '../../run/lm_run.js';
import { loadServedModel } from '../../serve/load.js';
import { InferenceWorker } from '../../serve/inference_worker.js';
import { createServer, drainOnSignals, generates } from '../../serve/server.js';
import { intArg, need, numArg, positiveIntArg } from '../args.js';
import type { RegisterCommand } from '../command.js';

interface ServeFlags {
  run?: string;
  port: number;
  host: string;
  targetP99Ms?: number;
  sub?: string;
  windowMs: number;
  maxBatch: number;
  maxQueue?: number;
  maxWaitMs?: number;
  graceMs: number;
  backend: string;
  inferenceThread: boolean;
}

export const registerServe: RegisterCommand = (program, exit) => {
  program
    .command('serve')
    .description(
      'serve a run over HTTP: POST /predict (micro-batched), GET /models, /health, /metrics; with --target-p99-ms the default sub-model adapts to the load',
    )
    .option('--run <dir>', 'the run folder (trained, and evaluated for accuracies)')
    .option('--port <n>', 'TCP port (0: any free port)', intArg, 8080)
    .option('--host <address>', 'address to bind (0.0.0.0 to accept other machines)', '127.0.0.1')
    .option(
      '--target-p99-ms <t>',
      'adaptive mode: hold this p99 latency by moving along the accuracy/FLOPs curve',
      numArg,
    )
    .option('--sub <spec>', 'fixed mode: the default sub-model (default: the most accurate)')
    .option('--window-ms <ms>', 'micro-batching window', numArg, 2)
    .option('--max-batch <n>', 'most samples per batch (and per request)', positiveIntArg, 32)
    .option('--max-queue <n>', 'most samples waiting before 503 (default 64 batches)', positiveIntArg)
    .option(
      '--max-wait-ms <ms>',
      'queue deadline: a request that waited longer for its batch is answered 503 with Retry-After, so an overloaded server sheds load instead of growing every latency (default: none)',
      numArg,
    )
    .option('--grace-ms <ms>', 'on SIGTERM, how long accepted requests and streams may take', numArg, 10_000)
    .option('--backend <name>', 'wasm | cpu | webgpu', 'wasm')
    .option(
      '--no-inference-thread',
      'classifiers: run the batches on the event loop instead of a thread of their own (one copy of the weights, but requests wait unread while a batch runs)',
    )
    .action(async (flags: ServeFlags) => {
      const runDir = need(flags.run, '--run DIR', 'serve');
      if (flags.targetP99Ms !== undefined && flags.sub !== undefined)
        throw new Error('serve: --target-p99-ms adapts the default sub-model and --sub fixes it; give one');
      if (flags.targetP99Ms !== undefined && !(flags.targetP99Ms > 0))
        throw new Error(`serve: --target-p99-ms ${flags.targetP99Ms} must be a positive number of ms`);
      if (flags.maxWaitMs !== undefined && !(flags.maxWaitMs >= 0))
        throw new Error(`serve: --max-wait-ms ${flags.maxWaitMs} must be ≥ 0 ms (0: no deadline)`);
      const backend = parseBackend(flags.backend, '--backend');
      await initEngine(backend);
      const served = await loadServedModel(runDir);
      // Older LM runs record no window in the checkpoint: their preset's, as `generate` uses.
      if (served.tokenizer) served.trainedContext = trainedContextOf(runDir, served.trainedContext);
      const worker =
        flags.inferenceThread && !generates(served)
          ? await InferenceWorker.start({ runDir, backend, maxBatch: flags.maxBatch })
          : undefined;
      const options = {
        targetP99Ms: flags.targetP99Ms,
        fixedSub: flags.sub,
        windowMs: flags.windowMs,
        maxBatch: flags.maxBatch,
        maxQueue: flags.maxQueue,
        maxWaitMs: flags.maxWaitMs,
        graceMs: flags.graceMs,
        logger: { level: 'info' } as const,
      };
      let server;
      let url: string;
      try {
        server = createServer(served, options, worker);
        url = await server.listen(flags.port, flags.host);
      } catch (e) {
        // Not serving (no sub-model runs, the port is taken): the thread must not outlive the error.
        await worker?.close();
        throw e;
      }
      const mode =
        flags.targetP99Ms !== undefined
          ? `adaptive, target p99 ${flags.targetP99Ms} ms`
          : `fixed sub-model ${server.active()}`;
      const where = worker ? ', batches on an inference thread' : '';
      console.log(`sortednet serve: listening on ${url} (${served.model.family}, ${mode}${where})`);
      // A server whose inference thread died cannot answer: drain what can be, exit 1 (a supervisor restarts it).
      const failed = new Promise<number>((resolve) =>
        worker?.onFailure((why) => {
          console.error(`sortednet serve: the inference thread stopped (${why}); shutting down`);
          void server.shutdown().finally(() => resolve(1));
        }),
      );
      // 0 only when every accepted request and stream was finished (see docs/deploy.md, Shutdown),
      // and never when the inference thread died, whichever ended the server.
      const code = await Promise.race([drainOnSignals(server), failed]);
      exit(worker?.failure ? 1 : code);
    });
};
