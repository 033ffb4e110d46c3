/**
 * Micro-batching: requests wait at most `windowMs` or until `maxBatch` samples are queued, then
 * run as one batch of one sub-model. Throughput grows with batch size until the cores saturate;
 * latency is queue wait + batch compute.
 *
 * A job without a fixed sub-model takes the server's default AT DISPATCH, so when the adaptive
 * controller moves the default down, the requests already queued get the faster sub-model too.
 *
 * A batch runs on the event loop (`run` returns its outputs) or on another thread (`run` returns a
 * promise). On the event loop, requests that arrive meanwhile wait unread in their sockets, and no
 * timer of the server sees that wait: a job read right after such a batch is counted as having
 * waited for the whole batch too (`hiddenMs`, the upper bound, which is what a p99 is made of).
 * A batch on another thread leaves the event loop free: requests are read as they arrive and
 * queue for the next batch, and nothing waits unseen.
 */

export interface BatcherOptions {
  /** Longest a request waits for others to join its batch, ms. */
  windowMs: number;
  /** Most samples in one batch. */
  maxBatch: number;
  /** Most samples waiting; beyond it `submit` rejects with OverloadedError. */
  maxQueue: number;
  /**
   * Longest a job may wait for its batch, ms, its unread wait included; a job that waited longer is
   * rejected with OverloadedError when the next batch is formed instead of being run (a queue
   * deadline, as Triton's queue policy). Absent: no deadline.
   */
  maxWaitMs?: number;
}

/**
 * Runs one batch: the inputs of every job (in order) through sub-model `sub`; one output per job,
 * at once (on the event loop) or as a promise (on another thread).
 */
export type RunBatch<I, O> = (sub: string, inputs: I[]) => O[] | PromiseLike<O[]>;

export interface BatchReport {
  sub: string;
  samples: number;
  jobs: number;
  ms: number;
}

/** The server cannot answer now (503 with Retry-After): overloaded, or its inference thread stopped. */
export class UnavailableError extends Error {}

/** Too much work waiting: the queue is full, or a request waited past the deadline. */
export class OverloadedError extends UnavailableError {}

interface Job<I, O> {
  input: I;
  samples: number;
  /** A fixed sub-model (a per-request budget), or null for the default at dispatch. */
  sub: string | null;
  enqueuedAt: number;
  /** What it may have waited unread while the batch before it ran, ms. */
  hiddenMs: number;
  resolve: (o: { output: O; sub: string; hiddenMs: number }) => void;
  reject: (e: Error) => void;
}

/** How long a job has waited at `now`, ms, its unread wait included. */
function waitedMs(job: { enqueuedAt: number; hiddenMs: number }, now: number): number {
  return now - job.enqueuedAt + job.hiddenMs;
}

export class MicroBatcher<I, O> {
  private queue: Job<I, O>[] = [];
  private queued = 0;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private idleWaiters: (() => void)[] = [];
  /** The last batch: when it ended, how long it ran, and whether a batch was dispatched since. */
  private lastBatch = { end: -Infinity, ms: 0, followed: true };
  /** When the running batch began. */
  private batchStart = 0;
  /** Jobs rejected for waiting past maxWaitMs, since the start. */
  expired = 0;

  constructor(
    readonly opts: BatcherOptions,
    private readonly run: RunBatch<I, O>,
    private readonly defaultSub: () => string,
    private readonly onBatch: (r: BatchReport) => void = () => {},
    private readonly clock: () => number = () => performance.now(),
  ) {
    if (!(opts.windowMs >= 0)) throw new Error(`batcher: windowMs ${opts.windowMs} must be ≥ 0`);
    if (!Number.isInteger(opts.maxBatch) || opts.maxBatch < 1)
      throw new Error(`batcher: maxBatch ${opts.maxBatch} must be a positive integer`);
    if (opts.maxWaitMs !== undefined && !(opts.maxWaitMs > 0))
      throw new Error(`batcher: maxWaitMs ${opts.maxWaitMs} must be > 0`);
  }

  /** Samples waiting (not yet in a running batch). */
  get queuedSamples(): number {
    return this.queued;
  }

  /** How long the batch running now has run, ms (0 when none runs): a batch that never ends is a stuck server. */
  get runningMs(): number {
    return this.running ? this.clock() - this.batchStart : 0;
  }

  /** How long the oldest queued job has waited, ms, its unread wait included (0 when none waits). */
  get oldestWaitMs(): number {
    const first = this.queue[0];
    return first ? waitedMs(first, this.clock()) : 0;
  }

  submit(
    input: I,
    samples: number,
    sub: string | null,
  ): Promise<{ output: O; sub: string; hiddenMs: number }> {
    if (this.queued + samples > this.opts.maxQueue) {
      return Promise.reject(
        new OverloadedError(
          `the queue holds ${this.queued} samples (limit ${this.opts.maxQueue}); retry later`,
        ),
      );
    }
    const now = this.clock();
    // Read in the turn of the event loop that followed a batch (none dispatched since, and no
    // longer ago than it ran): it may have arrived while that batch ran.
    const last = this.lastBatch;
    const hiddenMs = !last.followed && now - last.end <= last.ms ? last.ms : 0;
    return new Promise((resolve, reject) => {
      this.queue.push({ input, samples, sub, enqueuedAt: now, hiddenMs, resolve, reject });
      this.queued += samples;
      this.schedule();
    });
  }

  /** Resolves once nothing is queued or running (graceful shutdown). */
  drain(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops the window timer (the queue must be empty; see drain). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
  }

  private schedule(): void {
    if (this.running || this.immediate || this.queue.length === 0) return;
    const waited = this.clock() - this.queue[0].enqueuedAt;
    if (this.queued >= this.opts.maxBatch || waited >= this.opts.windowMs) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      // setImmediate, not a direct call: the event loop first reads the requests that arrived
      // meanwhile, so they can join this batch.
      this.immediate = setImmediate(() => {
        this.immediate = null;
        this.runBatch();
      });
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.schedule();
      }, this.opts.windowMs - waited);
    }
  }

  /**
   * Rejects the jobs that waited past the deadline. Under overload they are the ones whose answer
   * would come too late to use anyway; refusing them (503 with Retry-After) keeps the wait of the
   * others bounded instead of letting the queue, and every latency, grow.
   */
  private expire(): void {
    const limit = this.opts.maxWaitMs;
    if (limit === undefined) return;
    const now = this.clock();
    this.queue = this.queue.filter((j) => {
      const waited = waitedMs(j, now);
      if (waited <= limit) return true;
      this.queued -= j.samples;
      this.expired++;
      j.reject(
        new OverloadedError(
          `the request waited ${waited.toFixed(0)} ms for its batch (limit ${limit} ms): the server is overloaded; retry later`,
        ),
      );
      return false;
    });
  }

  private runBatch(): void {
    this.expire();
    if (this.queue.length === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    const fallback = this.defaultSub();
    const sub = this.queue[0].sub ?? fallback;
    const batch: Job<I, O>[] = [];
    const rest: Job<I, O>[] = [];
    let samples = 0;
    for (const job of this.queue) {
      const fits = batch.length === 0 || samples + job.samples <= this.opts.maxBatch;
      if (fits && (job.sub ?? fallback) === sub) {
        batch.push(job);
        samples += job.samples;
      } else rest.push(job);
    }
    this.queue = rest;
    this.queued -= samples;
    this.running = true;
    this.lastBatch.followed = true;
    const t0 = this.clock();
    this.batchStart = t0;
    let outputs: O[] | PromiseLike<O[]>;
    try {
      outputs = this.run(
        sub,
        batch.map((j) => j.input),
      );
    } catch (e) {
      this.fail(batch, sub, samples, t0, e as Error, false);
      return;
    }
    if (isPromiseLike(outputs)) {
      // On another thread: the event loop reads requests meanwhile, so none waits unseen.
      void outputs.then(
        (o) => this.finish(batch, sub, samples, t0, o, true),
        (e: Error) => this.fail(batch, sub, samples, t0, e, true),
      );
    } else this.finish(batch, sub, samples, t0, outputs, false);
  }

  private finish(
    batch: Job<I, O>[],
    sub: string,
    samples: number,
    t0: number,
    outputs: O[],
    off: boolean,
  ): void {
    batch.forEach((j, i) => j.resolve({ output: outputs[i], sub, hiddenMs: j.hiddenMs }));
    this.ended(sub, samples, batch.length, t0, off);
  }

  private fail(batch: Job<I, O>[], sub: string, samples: number, t0: number, e: Error, off: boolean): void {
    for (const j of batch) j.reject(e);
    this.ended(sub, samples, batch.length, t0, off);
  }

  /** After a batch: `offLoop` when it ran on another thread (nothing waited unread meanwhile). */
  private ended(sub: string, samples: number, jobs: number, t0: number, offLoop: boolean): void {
    this.running = false;
    const end = this.clock();
    this.lastBatch = { end, ms: end - t0, followed: offLoop };
    this.onBatch({ sub, samples, jobs, ms: end - t0 });
    if (this.queue.length > 0) this.schedule();
    else for (const w of this.idleWaiters.splice(0)) w();
  }
}

function isPromiseLike<T>(x: T | PromiseLike<T>): x is PromiseLike<T> {
  return typeof (x as { then?: unknown } | null)?.then === 'function';
}
