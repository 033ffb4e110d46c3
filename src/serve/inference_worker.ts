/**
 * A classifier server's batches on a thread of their own (node:worker_threads). The event loop
 * then only reads, queues and answers requests: it reads the next requests while a batch runs
 * (on the event loop they would wait unread in their sockets), and on a busy machine the server
 * has two threads to be scheduled instead of one. The thread loads the run from its folder, so
 * the weights are held twice (the event loop's copy answers /models and chooses sub-models).
 */
import { Worker } from 'node:worker_threads';
import type { BackendName } from '../engine/backend.js';
import { UnavailableError } from './batcher.js';

/** What the thread is started with. */
export interface ThreadSetup {
  runDir: string;
  backend: BackendName;
  maxBatch: number;
}

/** A sub-model's batch times measured on the thread (batch 1 and the full batch, ms), or why it cannot run. */
export type SubModelTiming = { id: string; one: number; full: number } | { id: string; error: string };

export interface ThreadRequest {
  seq: number;
  id: string;
  data: Float32Array | Int32Array;
  n: number;
}

export type ThreadReply =
  | { type: 'ready'; timings: SubModelTiming[]; engine: string }
  | { type: 'failed'; message: string }
  | { type: 'done'; seq: number; probs: Float32Array }
  | { type: 'error'; seq: number; message: string };

export class InferenceWorker {
  private seq = 0;
  private readonly pending = new Map<
    number,
    { resolve: (p: Float32Array) => void; reject: (e: Error) => void }
  >();
  /** Why the thread stopped, once it has. */
  private stopped: string | null = null;
  private closed = false;
  private readonly failureHandlers: ((why: string) => void)[] = [];

  private constructor(
    private readonly worker: Worker,
    /** Batch times per sub-model, measured on the thread at start-up. */
    readonly timings: readonly SubModelTiming[],
    /** The thread's engine, e.g. "backend wasm; native BLAS: on …". */
    readonly engine: string,
  ) {
    worker.on('message', (m: ThreadReply) => {
      if (m.type !== 'done' && m.type !== 'error') return;
      const p = this.pending.get(m.seq);
      this.pending.delete(m.seq);
      if (m.type === 'done') p?.resolve(m.probs);
      else p?.reject(new Error(m.message));
    });
    worker.on('error', (e: Error) => this.stop(e.message));
    worker.on('exit', (code) => this.stop(`it exited with code ${code}`));
  }

  /** Marks the thread stopped (once) and rejects what it was running. */
  private stop(why: string): void {
    if (this.stopped !== null) return;
    this.stopped = why;
    for (const p of this.pending.values()) p.reject(stoppedError(why));
    this.pending.clear();
    if (!this.closed) for (const f of this.failureHandlers) f(why);
  }

  /** Starts the thread on the run in `runDir`; resolves once every sub-model is timed there. */
  static start(setup: ThreadSetup): Promise<InferenceWorker> {
    const worker = new Worker(new URL('./inference_thread.js', import.meta.url), { workerData: setup });
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => early(e.message);
      const onExit = (code: number) => early(`it exited with code ${code}`);
      const early = (why: string) => {
        void worker.terminate();
        reject(
          new Error(
            `serve: the inference thread did not start: ${why} (--no-inference-thread runs the batches on the event loop instead)`,
          ),
        );
      };
      worker.once('error', onError);
      worker.once('exit', onExit);
      // Only this function's listeners are taken off: the worker's own (which start its port) stay.
      worker.once('message', (m: ThreadReply) => {
        worker.off('error', onError);
        worker.off('exit', onExit);
        if (m.type === 'ready') resolve(new InferenceWorker(worker, m.timings, m.engine));
        else early(m.type === 'failed' ? m.message : `unexpected first message '${m.type}'`);
      });
    });
  }

  /** Class probabilities [n × classes] of sub-model `id` for n samples (`data` is handed over, not copied). */
  run(id: string, data: Float32Array | Int32Array, n: number): Promise<Float32Array> {
    if (this.stopped !== null) return Promise.reject(stoppedError(this.stopped));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      try {
        this.worker.postMessage({ seq, id, data, n } satisfies ThreadRequest, [data.buffer as ArrayBuffer]);
      } catch (e) {
        this.pending.delete(seq);
        reject(e as Error);
      }
    });
  }

  /** Why the thread stopped when nobody closed it (it crashed, ran out of memory), or null. */
  get failure(): string | null {
    return this.closed ? null : this.stopped;
  }

  /** Calls `handler` if the thread stops without `close` (the server can no longer answer), or has already. */
  onFailure(handler: (why: string) => void): void {
    const failed = this.failure;
    if (failed !== null) queueMicrotask(() => handler(failed));
    else this.failureHandlers.push(handler);
  }

  /** Stops the thread (after the server's queue has drained; a batch still running is rejected). */
  async close(): Promise<void> {
    this.closed = true;
    this.stop('the server closed it');
    await this.worker.terminate();
  }
}

/** A 503 with Retry-After for the client: this server cannot answer any more, another instance can. */
function stoppedError(why: string): UnavailableError {
  return new UnavailableError(
    `the inference thread stopped: ${why}; this server cannot answer, retry on another instance`,
  );
}
