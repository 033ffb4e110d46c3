/**
 * The adaptive controller: moves the server's default sub-model along the accuracy/FLOPs ladder
 * to hold a p99 latency target (see the serving spec).
 *
 *  - Predicted latency of the next request under sub-model s with q samples queued:
 *      pred(s) = W + ⌊q / B⌋ · t(s, B) + t(s, q mod B + 1)   (the full batches ahead, then its own)
 *  - Down, at once: when the window's p99 or pred(current) exceeds the target, to the most
 *    accurate rung whose prediction fits (at least one step).
 *  - Up, one step at a time: only after p99 and pred(next rung) have stayed below
 *    `upFraction` · target for `holdMs`, and only when the next rung could serve the measured
 *    request rate at a utilisation below `upFraction`, with pred(next rung) taken at the LONGEST
 *    queue of the window (hysteresis: an empty queue now at the cheap rung does not mean the
 *    dearer one keeps up with the bursts, so no oscillation at a steady load).
 * The p99 window restarts at every switch, so latencies of the old sub-model do not push it
 * further. Every switch is reported with its reason.
 */

export interface ControllerOptions {
  targetP99Ms: number;
  windowMs: number;
  maxBatch: number;
  /** Sliding window of latencies for the p99, ms. */
  p99WindowMs?: number;
  /** Fewest latencies in the window before the p99 counts. */
  minSamples?: number;
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

  /** Expected ms for a batch of n samples. */
  estimate(id: string, n: number): number {
    const own = this.scale.get(id);
    const fresh = own !== undefined && this.lastAt - own.at <= BatchTimes.FRESH_MS;
    // Stale or never measured: the machine's slowdown now, and never less than the sub-model
    // last showed (a busy machine comes and goes; moving up on a lull is what oscillates).
    return this.modelled(id, n) * (fresh ? own.value : Math.max(own?.value ?? 0, this.machine));
  }

  /** Folds in a batch that ran (exponential averages of measured / modelled). */
  observe(id: string, n: number, ms: number, now = performance.now()): void {
    if (!this.base.has(id) || n < 1) return;
    const ratio = Math.min(50, Math.max(0.1, ms / Math.max(this.modelled(id, n), 1e-3)));
    const old = this.scale.get(id);
    const fresh = old !== undefined && now - old.at <= BatchTimes.FRESH_MS;
    // A stale own scale restarts from the estimate above.
    const from = fresh ? old.value : Math.max(old?.value ?? 0, this.machine);
    this.scale.set(id, { value: 0.8 * from + 0.2 * ratio, at: now });
    this.machine = 0.8 * this.machine + 0.2 * ratio;
    this.lastAt = Math.max(this.lastAt, now);
  }
}

/** Expected ms until a new request to sub-model `id` is answered, with `queue` samples ahead of it. */
export function predictLatency(times: BatchTimes, id: string, queue: number, windowMs: number): number {
  const B = times.maxBatch;
  const ahead = Math.floor(queue / B);
  return windowMs + ahead * times.estimate(id, B) + times.estimate(id, (queue % B) + 1);
}

/** The q-quantile (0..1) of xs (nearest rank). */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

export class AdaptiveController {
  private level: number;
  private lastSwitchAt = -Infinity;
  private lastUpAt = -Infinity;
  /** The hold before the next move up: holdMs, doubled after each failed move up. */
  private upHoldMs: number;
  private calmSince: number | null = null;
  private latencies: { at: number; ms: number; samples: number }[] = [];
  private queues: { at: number; queue: number }[] = [];
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
      upFraction: 0.7,
      holdMs: 1000,
      maxHoldMs: 30_000,
      ...opts,
    };
    this.level = ladder.length - 1;
    this.upHoldMs = this.opts.holdMs;
  }

  get active(): string {
    return this.ladder[this.level];
  }

  get activeLevel(): number {
    return this.level;
  }

  /** Expected end-to-end ms of a request dispatched to `id` with `queue` samples ahead. */
  predict(id: string, queue: number): number {
    return predictLatency(this.times, id, queue, this.opts.windowMs);
  }

  /** A served request's end-to-end latency (and its samples, for the request rate). */
  observe(ms: number, now: number, samples = 1): void {
    this.latencies.push({ at: now, ms, samples });
  }

  /** Fraction of the time sub-model `id` would be busy serving the window's sample rate in full batches. */
  utilisation(id: string, now: number): number {
    const from = Math.max(now - this.opts.p99WindowMs, this.lastSwitchAt);
    const samples = this.latencies.reduce((a, l) => (l.at >= from ? a + l.samples : a), 0);
    const span = Math.max(now - from, 1);
    const B = this.opts.maxBatch;
    return (samples / span) * (this.times.estimate(id, B) / B);
  }

  /** The p99 of the window (since the last switch), or null with too few requests. */
  p99(now: number): number | null {
    const from = Math.max(now - this.opts.p99WindowMs, this.lastSwitchAt);
    let i = 0;
    while (i < this.latencies.length && this.latencies[i].at < from) i++;
    if (i > 0) this.latencies.splice(0, i);
    if (this.latencies.length < this.opts.minSamples) return null;
    return quantile(
      this.latencies.map((l) => l.ms),
      0.99,
    );
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

  /** Decides, given the queue now; returns the switch made, if any. */
  tick(now: number, queue: number): Switch | null {
    const target = this.opts.targetP99Ms;
    // A move up that held for 3 holds was right: later moves up wait the base hold again.
    if (this.lastUpAt > -Infinity && now - this.lastUpAt > 3 * this.upHoldMs) {
      this.upHoldMs = this.opts.holdMs;
      this.lastUpAt = -Infinity;
    }
    const peak = this.peakQueue(now, queue);
    const p99 = this.p99(now);
    const pred = this.predict(this.active, queue);
    if (this.level > 0 && ((p99 !== null && p99 > target) || pred > target)) {
      let to = 0;
      for (let l = this.level - 1; l >= 0; l--) {
        if (this.predict(this.ladder[l], queue) <= target) {
          to = l;
          break;
        }
      }
      const why =
        p99 !== null && p99 > target
          ? `p99 ${p99.toFixed(1)} ms > target ${target} ms`
          : `predicted ${pred.toFixed(1)} ms > target ${target} ms with ${queue} queued`;
      return this.switchTo(to, now, why, p99, queue);
    }
    if (this.level === this.ladder.length - 1) return null;
    const calmAt = this.opts.upFraction * target;
    const up = this.ladder[this.level + 1];
    const next = this.predict(up, peak);
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
    this.latencies = [];
    this.queues = [];
    this.onSwitch(s);
    return s;
  }
}
