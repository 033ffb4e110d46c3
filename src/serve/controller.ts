/**
 * The adaptive controller: moves the server's default sub-model along the accuracy/FLOPs ladder
 * to hold a p99 latency target (see the serving spec). It decides when a batch is dispatched (the
 * queue then holds everything that arrived while the last batch ran) and every 50 ms when idle,
 * from the latency it can predict now, before the queue makes the p99 late:
 *  - t(s, n): the batch time of sub-model s for n samples, measured at start-up and scaled by what
 *    batches take now (BatchTimes, an envelope that rises at once and falls slowly);
 *  - now(s): the queued requests' completion (the oldest one's wait so far plus its batch), and a
 *    request arriving now: it waits for the queue to drain, then runs in the batch of what arrived
 *    meanwhile, W + drain(s, q) + t(s, λ · (W + drain));
 *  - steady(s): at the measured arrival rate λ, batches settle where n = λ · (W + t(s, n)), and the
 *    unluckiest request waits one batch and runs in the next: W + 2 · t(s, n) (∞ when s cannot keep
 *    up with λ), so a sub-model that is too slow for the load is left before its queue builds up.
 *  - Down, at once: when max(now, steady) of the current sub-model exceeds `downFraction` · target,
 *    or the window's p99 exceeds the target, to the most accurate rung whose max(now, steady) fits
 *    under `downFraction` · target (the cheapest when none does).
 *  - Up, one step at a time: only after p99, steady(next rung) and now(next rung) at the LONGEST
 *    queue of the window have stayed below `upFraction` · target for the hold, and only when the
 *    next rung would be busy less than `upFraction` of the time at λ (hysteresis: an empty queue
 *    now at the cheap rung does not mean the dearer one keeps up with the bursts). A move up undone
 *    within 3 holds doubles the hold (a busy machine's load comes and goes); one that lasts resets it.
 * The p99 window restarts at every switch, so latencies of the old sub-model do not push it
 * further. Every switch is reported with its reason.
 */

import { nearestRank, SlidingWindow } from './sliding_window.js';

export interface ControllerOptions {
  targetP99Ms: number;
  windowMs: number;
  maxBatch: number;
  /** Sliding window of latencies for the p99, ms. */
  p99WindowMs?: number;
  /** Fewest latencies in the window before the p99 counts. */
  minSamples?: number;
  /** Move down when the latency predicted for the current sub-model passes this fraction of the target. */
  downFraction?: number;
  /** Move up only below this fraction of the target… */
  upFraction?: number;
  /** …held this long, ms. */
  holdMs?: number;
  /**
   * Longest hold after failed moves up, ms: a move up followed by a move down within 3 holds
   * doubles the hold before the next move up (a busy machine's bursts); a move up that lasts
   * resets it.
   */
  maxHoldMs?: number;
}

export interface Switch {
  from: string;
  to: string;
  direction: 'down' | 'up';
  reason: string;
  p99Ms: number | null;
  queue: number;
}

/**
 * Per sub-model batch time: a line through measured (1, t1) and (B, tB), scaled by what batches
 * take now. A sub-model that ran recently has its own scale; one that has not (the rung above, on
 * a machine that has since become busy) takes the machine's current slowdown, measured on
 * whatever ran, so the controller steers on the service time it sees now, not on start-up figures.
 */
export class BatchTimes {
  private readonly base = new Map<string, { t1: number; tB: number }>();
  private readonly scale = new Map<string, { value: number; at: number }>();
  /** measured / modelled over every batch, whichever sub-model ran it. */
  private machine = 1;
  private lastAt = -Infinity;
  /** A sub-model's own scale counts while it ran within this many ms of the latest batch. */
  static readonly FRESH_MS = 2000;
  /** Past FRESH_MS, what a sub-model last showed above the machine's slowdown halves this often. */
  static readonly STALE_HALF_MS = 2000;

  constructor(readonly maxBatch: number) {}

  set(id: string, t1: number, tB: number): void {
    this.base.set(id, { t1, tB: Math.max(tB, t1) });
  }

  private modelled(id: string, n: number): number {
    const b = this.base.get(id);
    if (!b) throw new Error(`controller: no batch time measured for sub-model '${id}'`);
    return this.maxBatch > 1 ? b.t1 + ((b.tB - b.t1) * (n - 1)) / (this.maxBatch - 1) : b.t1;
  }

  /** The slowdown (measured / start-up) that batches show now, over every sub-model. */
  get slowdown(): number {
    return this.machine;
  }

  /**
   * The event loop's own time per sample outside batches (reading, parsing and answering the
   * request), ms: it grows a batch cycle as batch time does, and no sub-model makes it smaller.
   */
  private overheadMs = 0;

  /** Expected ms for a batch of n samples, their requests' handling included. */
  estimate(id: string, n: number): number {
    return this.modelled(id, n) * this.scaleOf(id, this.lastAt) + n * this.overheadMs;
  }

  /** The handling time per sample outside batches, measured now (an exponential average). */
  observeOverhead(msPerSample: number): void {
    if (!(msPerSample >= 0)) return;
    this.overheadMs = 0.7 * this.overheadMs + 0.3 * Math.min(msPerSample, 50);
  }

  get overhead(): number {
    return this.overheadMs;
  }

  /**
   * A sub-model's slowdown: its own while fresh. Stale or never measured: the machine's slowdown
   * now, plus what the sub-model last showed above it, halving every STALE_HALF_MS (a busy machine
   * comes and goes, and moving up on a lull is what oscillates; but a sub-model seen slow once
   * must not stay out of reach once the machine is quiet again).
   */
  private scaleOf(id: string, now: number): number {
    const own = this.scale.get(id);
    if (own !== undefined && now - own.at <= BatchTimes.FRESH_MS) return own.value;
    const excess = Math.max(0, (own?.value ?? 0) - this.machine);
    const age = own === undefined ? 0 : now - own.at - BatchTimes.FRESH_MS;
    return this.machine + excess * 2 ** (-age / BatchTimes.STALE_HALF_MS);
  }

  /** Folds in a batch that ran (exponential averages of measured / modelled). */
  observe(id: string, n: number, ms: number, now = performance.now()): void {
    if (!this.base.has(id) || n < 1) return;
    const ratio = Math.min(50, Math.max(0.1, ms / Math.max(this.modelled(id, n), 1e-3)));
    // A stale own scale restarts from the estimate above.
    const from = this.scaleOf(id, now);
    this.scale.set(id, { value: BatchTimes.envelope(from, ratio), at: now });
    this.machine = BatchTimes.envelope(this.machine, ratio);
    this.lastAt = Math.max(this.lastAt, now);
  }

  /**
   * Rises halfway to a slower batch at once, falls a tenth of the way to a faster one: on a busy
   * machine batch times scatter, and the p99 follows the slow ones, not their mean.
   */
  private static envelope(from: number, ratio: number): number {
    return ratio > from ? 0.5 * from + 0.5 * ratio : 0.9 * from + 0.1 * ratio;
  }
}

/** Expected ms until a new request to sub-model `id` is answered, with `queue` samples ahead of it. */
export function predictLatency(times: BatchTimes, id: string, queue: number, windowMs: number): number {
  const B = times.maxBatch;
  const ahead = Math.floor(queue / B);
  return windowMs + ahead * times.estimate(id, B) + times.estimate(id, (queue % B) + 1);
}

/** Expected ms to run `queue` queued samples of sub-model `id` in batches of at most maxBatch. */
export function drainMs(times: BatchTimes, id: string, queue: number): number {
  const B = times.maxBatch;
  const rest = queue % B;
  return Math.floor(queue / B) * times.estimate(id, B) + (rest > 0 ? times.estimate(id, rest) : 0);
}

/**
 * The latency a request arriving now can expect, and that of the queued ones: the new request waits
 * while the `queue` drains, then runs in a batch with what arrived meanwhile (`rate` samples per ms);
 * the oldest queued one has waited `oldestMs` and finishes with the first batch.
 */
export function predictNow(
  times: BatchTimes,
  id: string,
  queue: number,
  oldestMs: number,
  rate: number,
  windowMs: number,
): number {
  const B = times.maxBatch;
  const drain = drainMs(times, id, queue);
  const joining = Math.min(B, Math.max(1, Math.round(rate * (windowMs + drain))));
  const arriving = windowMs + drain + times.estimate(id, joining);
  const queued = queue > 0 ? oldestMs + times.estimate(id, Math.min(queue, B)) : 0;
  return Math.max(arriving, queued);
}

/**
 * Steady-state latency of sub-model `id` at `rate` samples per ms: each batch holds what arrived
 * while the previous one ran, n = rate · (W + t(n)), and the unluckiest request waits one batch and
 * runs in the next, W + 2 · t(n). Infinity when the sub-model cannot keep up with the rate.
 */
export function predictSteady(times: BatchTimes, id: string, rate: number, windowMs: number): number {
  const B = times.maxBatch;
  const one = times.estimate(id, 1);
  const full = times.estimate(id, B);
  const perSample = B > 1 ? (full - one) / (B - 1) : one;
  if (rate * (windowMs + full) > B || rate * perSample >= 1) return Infinity;
  // t(n) = one + perSample · (n − 1), solved for n = rate · (W + t(n)).
  const n = Math.min(B, Math.max(1, (rate * (windowMs + one - perSample)) / (1 - rate * perSample)));
  return windowMs + 2 * (one + perSample * (n - 1));
}

/** The q-quantile (0..1) of xs (nearest rank); NaN when empty. */
export function quantile(xs: readonly number[], q: number): number {
  return nearestRank(
    [...xs].sort((a, b) => a - b),
    q,
  );
}

export class AdaptiveController {
  private level: number;
  private lastSwitchAt = -Infinity;
  private lastUpAt = -Infinity;
  /** The hold before the next move up: holdMs, doubled after each failed move up. */
  private upHoldMs: number;
  private calmSince: number | null = null;
  private readonly latencies = new SlidingWindow(true);
  private queues: { at: number; queue: number }[] = [];
  /** Samples submitted, for the arrival rate (kept across switches: the load is not the sub-model's). */
  private readonly arrivals = new SlidingWindow(false);
  private firstArrival: number | null = null;
  readonly opts: Required<ControllerOptions>;

  constructor(
    /** Sub-model ids, cheapest first (the ladder). */
    readonly ladder: readonly string[],
    readonly times: BatchTimes,
    opts: ControllerOptions,
    private readonly onSwitch: (s: Switch) => void = () => {},
  ) {
    if (ladder.length === 0) throw new Error('controller: the ladder is empty');
    if (!(opts.targetP99Ms > 0)) throw new Error(`controller: target p99 ${opts.targetP99Ms} must be > 0 ms`);
    this.opts = {
      p99WindowMs: 1000,
      minSamples: 20,
      downFraction: 0.8,
      upFraction: 0.7,
      holdMs: 1000,
      maxHoldMs: 30_000,
      ...opts,
    };
    if (!(this.opts.upFraction < this.opts.downFraction))
      throw new Error(
        `controller: upFraction ${this.opts.upFraction} must be below downFraction ${this.opts.downFraction} (the band between them keeps it from oscillating)`,
      );
    this.level = ladder.length - 1;
    this.upHoldMs = this.opts.holdMs;
  }

  get active(): string {
    return this.ladder[this.level];
  }

  get activeLevel(): number {
    return this.level;
  }

  /** Expected ms for a request dispatched to `id` joining `queue` queued samples (budget requests). */
  predict(id: string, queue: number): number {
    return predictLatency(this.times, id, queue, this.opts.windowMs);
  }

  /** The latency `id` is predicted to give now (queue and oldest wait) and at the measured rate, ms. */
  expected(id: string, queue: number, oldestMs: number, now: number): { now: number; steady: number } {
    const rate = this.rate(now);
    return {
      now: predictNow(this.times, id, queue, oldestMs, rate, this.opts.windowMs),
      steady: predictSteady(this.times, id, rate, this.opts.windowMs),
    };
  }

  /** A request's samples, when it is queued (the arrival rate). */
  arrive(now: number, samples = 1): void {
    this.firstArrival ??= now;
    this.arrivals.push(now, samples);
  }

  /** Samples per ms arriving over the last window. */
  rate(now: number): number {
    const from = now - this.opts.p99WindowMs;
    this.arrivals.evictBefore(from);
    // Over the window, or since the first request when there has not been a window's worth; at
    // least 50 ms, so the first few requests do not read as a flood.
    const span = Math.max(now - Math.max(from, this.firstArrival ?? now), 50);
    return this.arrivals.sum / span;
  }

  /** A served request's end-to-end latency, ms. */
  observe(ms: number, now: number): void {
    this.latencies.push(now, ms);
  }

  /** Fraction of the time sub-model `id` would be busy serving the arrival rate in full batches. */
  utilisation(id: string, now: number): number {
    return (this.rate(now) * this.times.estimate(id, this.opts.maxBatch)) / this.opts.maxBatch;
  }

  /** The p99 of the window (since the last switch), or null with too few requests. */
  p99(now: number): number | null {
    const from = Math.max(now - this.opts.p99WindowMs, this.lastSwitchAt);
    this.latencies.evictBefore(from);
    if (this.latencies.size < this.opts.minSamples) return null;
    return this.latencies.quantile(0.99);
  }

  /** The longest queue seen in the window (since the last switch). */
  private peakQueue(now: number, queue: number): number {
    const from = Math.max(now - this.opts.p99WindowMs, this.lastSwitchAt);
    this.queues.push({ at: now, queue });
    while (this.queues.length > 0 && this.queues[0].at < from) this.queues.shift();
    return this.queues.reduce((a, q) => Math.max(a, q.queue), 0);
  }

  /** The hold before the next move up, ms (grows after failed moves up). */
  get holdMs(): number {
    return this.upHoldMs;
  }

  /**
   * Decides, given the samples queued now and how long the oldest of them has waited (ms, what it
   * waited unread while a batch ran included); returns the switch made, if any.
   */
  tick(now: number, queue: number, oldestMs = 0): Switch | null {
    const target = this.opts.targetP99Ms;
    // A move up that held for 3 holds was right: later moves up wait the base hold again.
    if (this.lastUpAt > -Infinity && now - this.lastUpAt > 3 * this.upHoldMs) {
      this.upHoldMs = this.opts.holdMs;
      this.lastUpAt = -Infinity;
    }
    const peak = this.peakQueue(now, queue);
    const p99 = this.p99(now);
    const worst = (id: string, q: number, oldest: number) => {
      const e = this.expected(id, q, oldest, now);
      return Math.max(e.now, e.steady);
    };
    const downAt = this.opts.downFraction * target;
    const pred = worst(this.active, queue, oldestMs);
    if (this.level > 0 && ((p99 !== null && p99 > target) || pred > downAt)) {
      let to = 0;
      for (let l = this.level - 1; l >= 0; l--) {
        if (worst(this.ladder[l], queue, oldestMs) <= downAt) {
          to = l;
          break;
        }
      }
      const e = this.expected(this.active, queue, oldestMs, now);
      const why =
        p99 !== null && p99 > target
          ? `p99 ${p99.toFixed(1)} ms > target ${target} ms`
          : e.now >= e.steady
            ? `predicted ${e.now.toFixed(1)} ms > ${downAt.toFixed(1)} ms (${this.opts.downFraction} × target ${target} ms) with ${queue} queued`
            : `predicted ${Number.isFinite(e.steady) ? `${e.steady.toFixed(1)} ms` : 'an ever-growing queue'} at ${(1000 * this.rate(now)).toFixed(0)} samples/s > ${downAt.toFixed(1)} ms (${this.opts.downFraction} × target ${target} ms)`;
      return this.switchTo(to, now, why, p99, queue);
    }
    if (this.level === this.ladder.length - 1) return null;
    const calmAt = this.opts.upFraction * target;
    const up = this.ladder[this.level + 1];
    // The next rung at the window's longest queue (its bursts), and at the measured rate.
    const next = worst(up, peak, 0);
    if (
      (p99 !== null && p99 >= calmAt) ||
      next > calmAt ||
      this.utilisation(up, now) > this.opts.upFraction
    ) {
      this.calmSince = null;
      return null;
    }
    this.calmSince ??= now;
    if (now - this.calmSince < this.upHoldMs || now - this.lastSwitchAt < this.upHoldMs) return null;
    const why = `p99 ${p99 === null ? 'idle' : `${p99.toFixed(1)} ms`} and predicted ${next.toFixed(1)} ms < ${calmAt.toFixed(1)} ms for ${this.upHoldMs} ms`;
    return this.switchTo(this.level + 1, now, why, p99, queue);
  }

  private switchTo(level: number, now: number, reason: string, p99: number | null, queue: number): Switch {
    const s: Switch = {
      from: this.active,
      to: this.ladder[level],
      direction: level < this.level ? 'down' : 'up',
      reason,
      p99Ms: p99,
      queue,
    };
    if (s.direction === 'up') this.lastUpAt = now;
    else if (now - this.lastUpAt <= 3 * this.upHoldMs) {
      // The last move up did not hold: wait longer before the next one (hysteresis that grows).
      this.upHoldMs = Math.min(2 * this.upHoldMs, this.opts.maxHoldMs);
      this.lastUpAt = -Infinity;
    }
    this.level = level;
    this.lastSwitchAt = now;
    this.calmSince = null;
    this.latencies.clear();
    this.queues = [];
    this.onSwitch(s);
    return s;
  }
}
