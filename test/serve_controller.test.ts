/** The adaptive controller on a simulated clock: down at once, up with hysteresis, no oscillation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { drainMs, predictLatency, predictNow, predictSteady, quantile } from '../src/serve/controller.js';
import { MicroBatcher, OverloadedError } from '../src/serve/batcher.js';
import { paretoLadder, servedSubModels } from '../src/serve/ladder.js';
import { SlidingWindow } from '../src/serve/sliding_window.js';
import { threeRungs } from './serve_fixture.js';

/** Three rungs: a batch of 8 takes 2, 8 and 32 ms. */
const setup = (holdMs = 500) => threeRungs(holdMs);

test('predicted latency: the full batches ahead, then the request’s own batch', () => {
  const { times } = setup();
  assert.equal(predictLatency(times, 'full', 0, 2), 2 + 4);
  assert.equal(predictLatency(times, 'full', 8, 2), 2 + 32 + 4);
  assert.equal(predictLatency(times, 'full', 11, 2), 2 + 32 + 4 + (28 * 3) / 7);
  assert.equal(quantile([5, 1, 4, 2, 3], 0.99), 5);
  assert.equal(quantile([5, 1, 4, 2, 3], 0.5), 3);
});

test('controller: moves down at once when the queue predicts a miss, to the best rung that fits', () => {
  const { c, switches } = setup();
  assert.equal(c.active, 'full');
  assert.equal(c.tick(0, 0), null, 'idle: stays on the most accurate');
  // 16 queued: full predicts 2 + 2·32 + 4 = 70 > 50; mid 2 + 16 + 2 = 20 fits.
  const s = c.tick(10, 16);
  assert.equal(s?.to, 'mid');
  assert.match(s!.reason, /predicted 70\.0 ms > 40\.0 ms \(0\.8 × target 50 ms\) with 16 queued/);
  // 64 queued: mid predicts 2 + 8·8 + 2 = 68; small 2 + 16 + 1 = 19.
  assert.equal(c.tick(20, 64)?.to, 'small');
  assert.deepEqual(switches, ['down:mid', 'down:small']);
});

test('controller: a p99 over target moves down even when the queue looks fine', () => {
  const { c } = setup();
  for (let i = 0; i < 10; i++) c.observe(i < 9 ? 10 : 80, i);
  const s = c.tick(10, 0);
  assert.equal(s?.direction, 'down');
  assert.match(s!.reason, /p99 80\.0 ms > target 50 ms/);
  assert.equal(c.p99(11), null, 'the window restarts at a switch');
});

test('controller: moves up one rung at a time, only after the hold time below 70% of target', () => {
  const { c, switches } = setup(500);
  c.tick(0, 64); // down to small
  assert.equal(c.active, 'small');
  for (let t = 1; t < 500; t += 50) assert.equal(c.tick(t, 0), null, `held at ${t} ms`);
  assert.equal(c.tick(600, 0)?.to, 'mid');
  assert.equal(c.tick(700, 0), null, 'one step, then hold again');
  assert.equal(c.tick(1200, 0)?.to, 'full');
  assert.deepEqual(switches, ['down:small', 'up:mid', 'up:full']);
});

test('controller: no oscillation at a steady load inside the hysteresis band', () => {
  const { c, switches } = setup(200);
  // 12 queued: full 2 + 32 + 4·... > 50 → mid (2 + 8 + 2 + 6·4/7 ≈ 15); mid → full predicted 2+32+4+3·28/7 = 50 > 35: stays.
  for (let t = 0; t < 20000; t += 10) {
    c.observe(30, t);
    c.tick(t, 12);
  }
  assert.deepEqual(switches, ['down:mid']);
});

test('ladder: the accuracy/FLOPs Pareto front, cheapest first', () => {
  const entries = [
    { index: 0, id: 'a', sub: {}, cost: { params: 1, flops: 10 } },
    { index: 1, id: 'b', sub: {}, cost: { params: 2, flops: 20 } },
    { index: 2, id: 'c', sub: {}, cost: { params: 3, flops: 30 } },
    { index: 3, id: 'd', sub: {}, cost: { params: 4, flops: 40 } },
  ];
  const row = (id: string, accuracy: number) => ({
    id,
    sub: {},
    params: 0,
    flops: 0,
    flopsFraction: 0,
    accuracy,
    latencyMs: 1,
  });
  const subs = servedSubModels(entries, [row('a', 0.5), row('b', 0.7), row('c', 0.6), row('d', 0.8)]);
  assert.deepEqual(
    paretoLadder(subs).map((s) => s.id),
    ['a', 'b', 'd'],
  );
  assert.deepEqual(
    paretoLadder(servedSubModels(entries)).map((s) => s.id),
    ['a', 'b', 'c', 'd'],
  );
});

test('controller: does not move up to a rung that could not serve the measured request rate', () => {
  const { c, switches } = setup(200);
  c.tick(0, 64); // down to small
  // 600 samples/s, queue empty: mid (8 ms per batch of 8) would be busy 60% → up; full (32 ms) 240% → never.
  for (let t = 1; t < 5000; t += 10) {
    for (let k = 0; k < 6; k++) {
      c.arrive(t);
      c.observe(5, t);
    }
    c.tick(t, 0);
  }
  assert.deepEqual(switches, ['down:small', 'up:mid']);
});

test('controller: does not move up when the window’s bursts would overflow the next rung', () => {
  const { c, switches } = setup(200);
  c.tick(0, 64); // down to small
  // Every second a burst of 40 queued, then empty: mid at 40 queued predicts 2 + 5·8 + 2 = 44 > 35.
  for (let t = 1; t < 5000; t += 10) c.tick(t, t % 1000 < 10 ? 40 : 0);
  assert.deepEqual(switches, ['down:small']);
});

test('predictions: a new request waits for the queue to drain, then runs with what arrived meanwhile; steady state at a rate', () => {
  const { times } = setup();
  // full: 8 queued drain in 32 ms; 0.2 samples/ms arrive meanwhile (2 + 32 ms → 7 samples, 28 ms).
  assert.equal(predictNow(times, 'full', 8, 0, 0.2, 2), 2 + 32 + 28);
  // The oldest queued request has waited 40 ms already: it finishes with the first batch (32 ms).
  assert.equal(predictNow(times, 'full', 8, 40, 0, 2), 40 + 32);
  assert.equal(predictNow(times, 'full', 0, 0, 0, 2), 2 + 4, 'idle: its own batch of one');
  // mid at 0.1 samples/ms: batches of one (2 ms), the unluckiest request waits one and runs in the next.
  assert.equal(predictSteady(times, 'mid', 0.1, 2), 2 + 2 * 2);
  // mid at 0.5 samples/ms: n = 0.5 · (2 + 2 − 6/7) / (1 − 0.5 · 6/7) = 2.75 samples, t = 2 + 1.75 · 6/7 ms.
  assert.ok(Math.abs(predictSteady(times, 'mid', 0.5, 2) - (2 + 2 * (2 + (1.75 * 6) / 7))) < 1e-9);
  assert.equal(predictSteady(times, 'full', 0.5, 2), Infinity, 'full serves at most 0.25 samples/ms');
  assert.ok(Math.abs(drainMs(times, 'mid', 11) - (8 + 2 + (6 * 2) / 7)) < 1e-9);
});

test('controller: a sub-model too slow for the arrival rate is left before its queue builds up or the p99 is late', () => {
  const { c, switches } = setup();
  // 500 samples/s; the queue never holds more than one sample and nothing was late yet.
  let s = null;
  for (let t = 0; t <= 300 && !s; t += 10) {
    for (let k = 0; k < 5; k++) c.arrive(t);
    s = c.tick(t, 1);
  }
  // full serves at most 8 per 32 ms (250/s): its queue would grow without end. mid keeps up.
  assert.deepEqual(switches, ['down:mid']);
  assert.match(s!.reason, /an ever-growing queue at \d+ samples\/s/);
});

test('controller: a queued request that has already waited long moves it down, though the queue is short', () => {
  const { c, switches } = setup();
  assert.equal(c.tick(0, 2, 20), null, '20 + 8 ms fits');
  // Waited 45 ms (most of it unread, while a batch ran): 45 + 8 > 40 at full, and no rung gets it under.
  const s = c.tick(10, 2, 45);
  assert.deepEqual(switches, ['down:small']);
  assert.match(s!.reason, /predicted 53\.0 ms/);
});

/**
 * A server in simulation: requests every `1 / rate` ms, read whenever no batch runs (those that
 * arrive during a batch wait unread), dispatched in batches of at most 8 to the controller's choice,
 * each batch taking the start-up time × the machine's slowdown then. Returns the latencies.
 */
function simulate(
  c: ReturnType<typeof setup>['c'],
  times: ReturnType<typeof setup>['times'],
  rate: number,
  slowdown: (t: number) => number,
  untilMs: number,
): { at: number; ms: number; sub: string }[] {
  const truth: Record<string, [number, number]> = { small: [1, 2], mid: [2, 8], full: [4, 32] };
  const served: { at: number; ms: number; sub: string }[] = [];
  const queue: number[] = [];
  let next = 0;
  let t = 0;
  let lastTick = -Infinity;
  while (t < untilMs) {
    for (; next <= t; next += 1 / rate) {
      queue.push(next);
      c.arrive(t);
    }
    if (queue.length === 0) {
      // Idle: the 50 ms timer ticks meanwhile.
      if (next - lastTick > 50) c.tick((lastTick = Math.max(t, lastTick + 50)), 0, 0);
      t = next;
      continue;
    }
    c.tick((lastTick = t), queue.length, t - queue[0]);
    const sub = c.active;
    const batch = queue.splice(0, Math.min(8, queue.length));
    const [one, full] = truth[sub];
    const ms = (one + ((full - one) * (batch.length - 1)) / 7) * slowdown(t);
    t += ms;
    times.observe(sub, batch.length, ms, t);
    for (const a of batch) {
      served.push({ at: t, ms: t - a, sub });
      c.observe(t - a, t);
    }
  }
  return served;
}

test('controller: holds p99 while the machine slows 3× and recovers, without oscillating', () => {
  const { c, times, switches } = setup(1000);
  // 400 samples/s: more than full serves (250/s); mid serves it on a quiet machine, not at 3× (333/s).
  const busy = (t: number) => t >= 5000 && t < 15000;
  const served = simulate(c, times, 0.4, (t) => (busy(t) ? 3 : 1), 25_000);
  const p99 = (xs: { ms: number }[]) =>
    quantile(
      xs.map((x) => x.ms),
      0.99,
    );
  const quiet = served.filter((s) => !busy(s.at) && s.at > 1000);
  const slow = served.filter((s) => busy(s.at));
  assert.ok(
    p99(quiet) <= 50,
    `quiet p99 ${p99(quiet).toFixed(1)} ms > 50 ms (switches ${switches.join(' ')})`,
  );
  assert.ok(p99(slow) <= 75, `busy p99 ${p99(slow).toFixed(1)} ms > 75 ms (switches ${switches.join(' ')})`);
  assert.ok(switches.length <= 6, `${switches.length} switches: ${switches.join(' ')}`);
  assert.equal(served.at(-1)!.sub, 'mid', 'back on mid once the machine is quiet again');
});

test('batcher: the default is chosen at dispatch with the queue in view; a job read right after a batch counts that batch as waited', async () => {
  let now = 0;
  const seen: number[] = [];
  const b: MicroBatcher<number, number> = new MicroBatcher<number, number>(
    { windowMs: 0, maxBatch: 8, maxQueue: 100 },
    (_sub, xs) => {
      now += 30; // each batch runs 30 ms on the event loop
      return xs;
    },
    () => {
      seen.push(b.queuedSamples);
      return 'd';
    },
    () => {},
    () => now,
  );
  const first = [b.submit(1, 1, null), b.submit(2, 1, null), b.submit(3, 1, null)];
  assert.equal(b.oldestWaitMs, 0);
  const done = await Promise.all(first);
  assert.deepEqual(seen, [3], 'one dispatch, which saw all three queued');
  assert.deepEqual(
    done.map((d) => d.hiddenMs),
    [0, 0, 0],
  );
  // Read in the turn after that 30 ms batch: it may have arrived when the batch began.
  const late = b.submit(4, 1, null);
  now += 5;
  assert.equal(b.oldestWaitMs, 35);
  assert.equal((await late).hiddenMs, 30);
  // Long after the last batch, on an idle server: nothing unread.
  now += 500;
  assert.equal((await b.submit(5, 1, null)).hiddenMs, 0);
});

test('controller: the server’s own time per request counts: a sub-model that keeps up in compute alone may not keep up with it', () => {
  const { c, times, switches } = setup();
  assert.ok(Number.isFinite(predictSteady(times, 'mid', 0.6, 2)), 'mid computes 600 samples/s');
  for (let k = 0; k < 40; k++) times.observeOverhead(1); // 1 ms per request outside batches
  assert.ok(Math.abs(times.overhead - 1) < 1e-3);
  assert.equal(predictSteady(times, 'mid', 0.6, 2), Infinity, 'mid + 1 ms a request: 1.86 ms a sample');
  for (let t = 0; t < 300; t += 10) for (let k = 0; k < 6; k++) c.arrive(t);
  c.tick(300, 1);
  assert.deepEqual(switches, ['down:small']);
});

test('batcher: a queue deadline refuses (OverloadedError) the jobs that waited past it, runs the rest', async () => {
  let now = 0;
  const ran: number[][] = [];
  const make = (maxWaitMs?: number) =>
    new MicroBatcher<number, number>(
      { windowMs: 0, maxBatch: 2, maxQueue: 100, ...(maxWaitMs === undefined ? {} : { maxWaitMs }) },
      (_sub, xs) => {
        ran.push(xs);
        now += 30; // each batch of 2 runs 30 ms: the third job waits 30, the fifth 60
        return xs;
      },
      () => 'd',
      () => {},
      () => now,
    );
  const b = make(45);
  const jobs = [1, 2, 3, 4, 5].map((x) => b.submit(x, 1, null));
  const settled = await Promise.allSettled(jobs);
  assert.deepEqual(ran, [
    [1, 2],
    [3, 4],
  ]);
  assert.deepEqual(
    settled.map((s) => s.status),
    ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected'],
  );
  const reason = (settled[4] as PromiseRejectedResult).reason as Error;
  assert.ok(reason instanceof OverloadedError);
  assert.match(reason.message, /waited 60 ms for its batch \(limit 45 ms\)/);
  assert.equal(b.expired, 1);
  assert.equal(b.queuedSamples, 0);
  await b.drain(); // nothing left: the drain resolves
  // Without a deadline every job runs, however long it waited.
  ran.length = 0;
  const all = await Promise.all([1, 2, 3, 4, 5].map((x) => make().submit(x, 1, null)));
  assert.equal(all.length, 5);
  assert.throws(() => make(0), /maxWaitMs 0 must be > 0/);
});

test('sliding window: count, sum and quantiles equal a sort of what is in the window, as values come and go', () => {
  const w = new SlidingWindow(true);
  const all: { at: number; v: number }[] = [];
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  let at = 0;
  for (let step = 0; step < 6000; step++) {
    at += rand() < 0.3 ? 0 : rand() * 2; // equal times too
    // Few distinct values (ties) in one stretch, many in another.
    const v = step < 3000 ? Math.floor(rand() * 5) : rand() * 100;
    w.push(at, v);
    all.push({ at, v });
    if (step % 7 === 0) {
      const from = at - 1000 * rand();
      w.evictBefore(from);
      const kept = all.filter((x) => x.at >= from);
      all.length = 0;
      all.push(...kept);
    }
    if (step % 13 === 0) {
      assert.equal(w.size, all.length);
      assert.ok(Math.abs(w.sum - all.reduce((a, x) => a + x.v, 0)) < 1e-6);
      for (const q of [0, 0.5, 0.99, 1])
        assert.equal(
          w.quantile(q),
          all.length
            ? quantile(
                all.map((x) => x.v),
                q,
              )
            : NaN,
          `q ${q} at ${step}`,
        );
    }
  }
  w.evictBefore(Infinity);
  assert.equal(w.size, 0);
  assert.ok(Number.isNaN(w.quantile(0.99)));
});
