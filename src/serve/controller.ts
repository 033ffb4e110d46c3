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
}

export interface Switch {
  from: string;
  to: string;
  direction: 'down' | 'up';
  reason: string;
  p99Ms: number | null;
  queue: number;
}

/** Per sub-model batch time: a line through measured (1, t1) and (B, tB), scaled by what batches really took. */
export class BatchTimes {
  private readonly base = new Map<string, { t1: number; tB: number }>();
  private readonly scale = new Map<string, number>();
  constructor(readonly maxBatch: number) {}

  set(id: string, t1: number, tB: number): void {
    this.base.set(id, { t1, tB: Math.max(tB, t1) });
  }

  /** Expected ms for a batch of n samples. */
  estimate(id: string, n: number): number {
    const b = this.base.get(id);
    if (!b) throw new Error(`controller: no batch time measured for sub-model '${id}'`);
    const lin = this.maxBatch > 1 ? b.t1 + ((b.tB - b.t1) * (n - 1)) / (this.maxBatch - 1) : b.t1;
    return lin * (this.scale.get(id) ?? 1);
  }

  /** Folds in a batch that ran (exponential average of measured / modelled). */
  observe(id: string, n: number, ms: number): void {
    const b = this.base.get(id);
    if (!b || n < 1) return;
    const modelled = this.maxBatch > 1 ? b.t1 + ((b.tB - b.t1) * (n - 1)) / (this.maxBatch - 1) : b.t1;
    const ratio = Math.min(10, Math.max(0.1, ms / Math.max(modelled, 1e-3)));
    const old = this.scale.get(id) ?? 1;
    this.scale.set(id, 0.8 * old + 0.2 * ratio);
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
    this.opts = { p99WindowMs: 1000, minSamples: 20, upFraction: 0.7, holdMs: 1000, ...opts };
    this.level = ladder.length - 1;
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

  /** Decides, given the queue now; returns the switch made, if any. */
  tick(now: number, queue: number): Switch | null {
    const target = this.opts.targetP99Ms;
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
    if (now - this.calmSince < this.opts.holdMs || now - this.lastSwitchAt < this.opts.holdMs) return null;
    const why = `p99 ${p99 === null ? 'idle' : `${p99.toFixed(1)} ms`} and predicted ${next.toFixed(1)} ms < ${calmAt.toFixed(1)} ms for ${this.opts.holdMs} ms`;
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
    this.level = level;
    this.lastSwitchAt = now;
    this.calmSince = null;
    this.latencies = [];
    this.queues = [];
    this.onSwitch(s);
    return s;
  }
}
