/**
 * Values over a sliding window of time (latencies, arrivals): their count, their sum and, when
 * `ordered`, their quantiles, each kept as values come and go. The controller reads them at every
 * batch: a loaded server holds thousands of latencies a second and reads them hundreds of times a
 * second, so sorting the window at every read was a large part of its event loop's work.
 */
export class SlidingWindow {
  private times: number[] = [];
  private values: number[] = [];
  /** Index of the oldest value still in the window (the arrays are compacted now and then). */
  private head = 0;
  private total = 0;
  /** The window's values in ascending order (only when `ordered`). */
  private sorted: number[] = [];

  constructor(private readonly ordered: boolean) {}

  get size(): number {
    return this.times.length - this.head;
  }

  get sum(): number {
    return this.total;
  }

  /** Adds `value` at time `at` (times never decrease); a value that is not finite is not kept. */
  push(at: number, value: number): void {
    if (!Number.isFinite(value)) return;
    this.times.push(at);
    this.values.push(value);
    this.total += value;
    if (this.ordered) this.sorted.splice(upperBound(this.sorted, value), 0, value);
  }

  /** Drops the values added before `from`. */
  evictBefore(from: number): void {
    while (this.head < this.times.length && this.times[this.head] < from) {
      const v = this.values[this.head++];
      this.total -= v;
      if (this.ordered) this.sorted.splice(upperBound(this.sorted, v) - 1, 1);
    }
    if (this.head === this.times.length) this.clear();
    else if (this.head > 1024 && 2 * this.head > this.times.length) {
      this.times = this.times.slice(this.head);
      this.values = this.values.slice(this.head);
      this.head = 0;
    }
  }

  /** The q-quantile (0..1, nearest rank) of the window's values; NaN when empty or not `ordered`. */
  quantile(q: number): number {
    return this.ordered ? nearestRank(this.sorted, q) : NaN;
  }

  clear(): void {
    this.times = [];
    this.values = [];
    this.sorted = [];
    this.head = 0;
    this.total = 0;
  }
}

/** The q-quantile (0..1) of ascending `sorted` by nearest rank; NaN when it is empty. */
export function nearestRank(sorted: readonly number[], q: number): number {
  const n = sorted.length;
  return n === 0 ? NaN : sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))];
}

/** The first index of ascending `xs` whose value is above `v`. */
function upperBound(xs: readonly number[], v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
