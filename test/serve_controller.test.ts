/** The adaptive controller on a simulated clock: down at once, up with hysteresis, no oscillation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { predictLatency, quantile } from '../src/serve/controller.js';
import { paretoLadder, servedSubModels } from '../src/serve/ladder.js';
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
  assert.match(s!.reason, /predicted 70\.0 ms > target 50 ms with 16 queued/);
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
    for (let k = 0; k < 6; k++) c.observe(5, t);
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
