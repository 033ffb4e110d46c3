/** The inference server: answers, budgets, validation of every malformed input, metrics, batching, drain. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import type { InjectOptions } from 'fastify';
import { initEngine } from '../src/engine/backend.js';
import { IMAGE, image, tinyServer } from './serve_fixture.js';

before(async () => {
  await initEngine('cpu');
});

const json = (payload: unknown, url = '/predict') => ({
  method: 'POST' as const,
  url,
  payload: payload as object,
});
const binary = (data: Float32Array | Buffer, shape: string | undefined, url = '/predict') => ({
  method: 'POST' as const,
  url,
  headers: {
    'content-type': 'application/octet-stream',
    ...(shape === undefined ? {} : { 'x-shape': shape }),
  },
  payload: Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength),
});

test('predict: JSON (flat and nested) and binary bodies give the model’s own answer and name the sub-model', async () => {
  const s = tinyServer();
  const x = [image(1), image(2)];
  const full = s.grid.largest;
  const expected = tf.tidy(() =>
    tf
      .softmax(
        s.model.forward(tf.tensor4d(x.flat(), [2, IMAGE, IMAGE, 1]), full.sub, {
          mode: 'eval',
          key: full.id,
        }),
      )
      .arraySync(),
  ) as number[][];

  const r1 = await s.app.inject(json({ inputs: x, probabilities: true }));
  assert.equal(r1.statusCode, 200, r1.body);
  const a = r1.json();
  assert.equal(a.sub, full.id, 'the default is the most accurate sub-model');
  assert.equal(r1.headers['x-sub-model'], full.id);
  assert.equal(a.flops, full.cost.flops);
  for (let i = 0; i < 2; i++) {
    a.probabilities[i].forEach((p: number, c: number) => assert.ok(Math.abs(p - expected[i][c]) < 1e-5));
    const best = expected[i].indexOf(Math.max(...expected[i]));
    assert.equal(a.predictions[i].class, best);
    assert.equal(a.predictions[i].label, ['a', 'b', 'c'][best]);
  }

  const nested = x.map((img) =>
    Array.from({ length: IMAGE }, (_, h) => img.slice(h * IMAGE, (h + 1) * IMAGE)),
  );
  const r2 = await s.app.inject(json({ inputs: nested, probabilities: true }));
  assert.deepEqual(r2.json().probabilities, a.probabilities);
  const nestedC = x.map((img) =>
    Array.from({ length: IMAGE }, (_, h) => Array.from({ length: IMAGE }, (_, w) => [img[h * IMAGE + w]])),
  );
  const r3 = await s.app.inject(json({ inputs: nestedC, probabilities: true }));
  assert.deepEqual(r3.json().probabilities, a.probabilities);

  const r4 = await s.app.inject(
    binary(new Float32Array(x.flat()), `2,${IMAGE},${IMAGE},1`, '/predict?probabilities=true'),
  );
  assert.equal(r4.statusCode, 200, r4.body);
  r4.json().probabilities.forEach((row: number[], i: number) =>
    row.forEach((p, c) => assert.ok(Math.abs(p - a.probabilities[i][c]) < 1e-6)),
  );
  const r5 = await s.app.inject(binary(new Float32Array(x.flat()), `2,${IMAGE * IMAGE}`));
  assert.equal(r5.statusCode, 200, r5.body);
  await s.shutdown();
});

test('predict: per-request sub, maxFlops and maxLatencyMs choose the sub-model', async () => {
  const s = tinyServer();
  const [small, large] = s.grid.entries;
  const x = [image(3)];
  let r = await s.app.inject(json({ inputs: x, sub: small.id }));
  assert.equal(r.json().sub, small.id);
  r = await s.app.inject(
    binary(new Float32Array(x[0]), `1,${IMAGE},${IMAGE},1`, `/predict?sub=${encodeURIComponent(small.id)}`),
  );
  assert.equal(r.json().sub, small.id);
  r = await s.app.inject(json({ inputs: x, sub: 'width=1,depth=2' }));
  assert.equal(r.json().sub, large.id, 'ids are canonical: key order does not matter');
  r = await s.app.inject(json({ inputs: x, sub: 'full' }));
  assert.equal(r.json().sub, large.id, "'full' is the grid's largest sub-model");
  r = await s.app.inject(json({ inputs: x, maxFlops: large.cost.flops - 1 }));
  assert.equal(r.json().sub, small.id);
  r = await s.app.inject(json({ inputs: x, maxFlops: large.cost.flops }));
  assert.equal(r.json().sub, large.id);
  r = await s.app.inject(json({ inputs: x, maxLatencyMs: 1e6 }));
  assert.equal(r.json().sub, large.id);
  r = await s.app.inject(json({ inputs: x }, `/predict?maxFlops=${small.cost.flops}`));
  assert.equal(r.json().sub, small.id);
  r = await s.app.inject(json({ inputs: x, maxFlops: small.cost.flops / 2 }));
  assert.equal(r.statusCode, 422);
  assert.match(r.json().message, /no sub-model within maxFlops/);
  await s.shutdown();
});

/** Every kind of malformed input: 4xx, and a message naming what is wrong. */
const MALFORMED: [
  string,
  () => ReturnType<typeof json> | ReturnType<typeof binary> | object,
  number,
  RegExp,
][] = [
  ['wrong shape', () => json({ inputs: [[1, 2, 3]] }), 400, /inputs\[0\] has 3 entries; expected 64/],
  ['wrong nested shape', () => json({ inputs: [[[1, 2]]] }), 400, /inputs\[0\]/],
  [
    'wrong type',
    () => json({ inputs: [image(1).map(String)] }),
    400,
    /inputs\[0\]\[0\] is "[-0-9.]+"; expected a finite number/,
  ],
  ['inputs not an array', () => json({ inputs: 'cat' }), 400, /body\/inputs must be array/],
  ['a sample not an array', () => json({ inputs: [5] }), 400, /inputs\/0 must be array/],
  [
    'infinite number',
    () => ({
      ...json({}),
      headers: { 'content-type': 'application/json' },
      payload: `{"inputs":[[${'1e999,'.repeat(63)}1]]}`,
    }),
    400,
    /inputs\[0\]\[0\] is Infinity; expected a finite number/,
  ],
  [
    'NaN in a binary body',
    () => binary(new Float32Array(IMAGE * IMAGE).fill(NaN), `1,${IMAGE},${IMAGE},1`),
    400,
    /sample 0, value 0 is NaN/,
  ],
  [
    'Infinity in a binary body',
    () => binary(new Float32Array(IMAGE * IMAGE).fill(Infinity), `1,${IMAGE * IMAGE}`),
    400,
    /is Infinity/,
  ],
  [
    'truncated binary',
    () => binary(Buffer.alloc(IMAGE * IMAGE * 4 - 3), `1,${IMAGE},${IMAGE},1`),
    400,
    /holds 253 bytes; .* needs 256 .*truncated/,
  ],
  [
    'binary without a shape',
    () => binary(new Float32Array(IMAGE * IMAGE), undefined),
    400,
    /needs the 'x-shape' header/,
  ],
  [
    'binary with a bad shape header',
    () => binary(new Float32Array(IMAGE * IMAGE), '1,eight,8'),
    400,
    /must be 2\.\.8 positive integers/,
  ],
  [
    'binary of the wrong shape',
    () => binary(new Float32Array(IMAGE * IMAGE), '1,4,16,1'),
    400,
    /does not fit the model: expected \[N, 8, 8, 1\]/,
  ],
  [
    'too many binary samples',
    () => binary(new Float32Array(9 * IMAGE * IMAGE), `9,${IMAGE * IMAGE}`),
    413,
    /9 samples in one request; at most 8/,
  ],
  [
    'too many JSON samples',
    () => json({ inputs: Array(9).fill(image(1)) }),
    400,
    /must NOT have more than 8 items/,
  ],
  ['no samples', () => json({ inputs: [] }), 400, /must NOT have fewer than 1 items/],
  ['unknown sub-model', () => json({ inputs: [image(1)], sub: 'depth=7' }), 400, /depth 7 is outside 2\.\.2/],
  [
    'a dimension the grid does not have',
    () => json({ inputs: [image(1)], sub: 'heads=2' }),
    400,
    /unknown sub-model 'heads=2'/,
  ],
  ['unparsable sub-model', () => json({ inputs: [image(1)], sub: 'wide' }), 400, /cannot parse 'wide'/],
  [
    'sub-model out of range',
    () => json({ inputs: [image(1)], sub: 'width=2' }),
    400,
    /width=2 must be a fraction/,
  ],
  [
    'sub and budget together',
    () => json({ inputs: [image(1)], sub: 'full', maxFlops: 1e9 }),
    400,
    /either 'sub' or a budget/,
  ],
  ['negative budget', () => json({ inputs: [image(1)], maxFlops: -1 }), 400, /maxFlops must be > 0/],
  [
    'budget in body and query',
    () => json({ inputs: [image(1)], maxFlops: 1e9 }, '/predict?maxFlops=5'),
    400,
    /given in both/,
  ],
  [
    'bad query number',
    () => json({ inputs: [image(1)] }, '/predict?maxLatencyMs=soon'),
    400,
    /querystring\/maxLatencyMs must match pattern/,
  ],
  [
    'unknown query field',
    () => json({ inputs: [image(1)] }, '/predict?temperature=1'),
    400,
    /querystring has an unknown field 'temperature'/,
  ],
  [
    'unknown body field',
    () => json({ inputs: [image(1)], input: [] }),
    400,
    /body has an unknown field 'input'/,
  ],
  [
    'malformed JSON',
    () => ({
      method: 'POST',
      url: '/predict',
      headers: { 'content-type': 'application/json' },
      payload: '{"inputs": [[1,',
    }),
    400,
    /not valid JSON/,
  ],
  [
    'empty JSON body',
    () => ({ method: 'POST', url: '/predict', headers: { 'content-type': 'application/json' }, payload: '' }),
    400,
    /empty/i,
  ],
  [
    'JSON array body',
    () => ({
      method: 'POST',
      url: '/predict',
      headers: { 'content-type': 'application/json' },
      payload: '[1,2]',
    }),
    400,
    /body must be object/,
  ],
  [
    'prototype pollution',
    () => ({
      method: 'POST',
      url: '/predict',
      headers: { 'content-type': 'application/json' },
      payload: '{"inputs":[[1]],"__proto__":{"x":1}}',
    }),
    400,
    /not valid JSON/,
  ],
  [
    'unsupported content type',
    () => ({ method: 'POST', url: '/predict', headers: { 'content-type': 'text/plain' }, payload: 'hello' }),
    415,
    /Unsupported Media Type/i,
  ],
  [
    'oversized body',
    () => ({
      method: 'POST',
      url: '/predict',
      headers: { 'content-type': 'application/octet-stream', 'x-shape': '1,64' },
      payload: Buffer.alloc(2 * 1024 * 1024),
    }),
    413,
    /too large/i,
  ],
  ['unknown route', () => ({ method: 'GET', url: '/predictions' }), 404, /no route GET \/predictions/],
  ['wrong method', () => ({ method: 'GET', url: '/predict' }), 404, /no route GET \/predict/],
];

test('predict: every malformed input gets a 4xx naming what is wrong', async () => {
  const s = tinyServer({ bodyLimit: 1024 * 1024 });
  for (const [what, make, status, message] of MALFORMED) {
    const r = await s.app.inject(make() as InjectOptions);
    assert.equal(r.statusCode, status, `${what}: ${r.body}`);
    assert.match(r.json().message, message, what);
  }
  const h = await s.app.inject({ method: 'GET', url: '/health' });
  assert.equal(h.statusCode, 200);
  assert.equal(h.json().status, 'ok');
  await s.shutdown();
});

test('micro-batching: concurrent requests share batches and each gets its own answer', async () => {
  const s = tinyServer({ windowMs: 20, maxBatch: 8 });
  const xs = Array.from({ length: 12 }, (_, i) => image(10 + i));
  const alone: number[][] = [];
  for (const x of xs)
    alone.push((await s.app.inject(json({ inputs: [x], probabilities: true }))).json().probabilities[0]);
  const before = await batchCount(s);
  const together = await Promise.all(xs.map((x) => s.app.inject(json({ inputs: [x], probabilities: true }))));
  const batches = (await batchCount(s)) - before;
  assert.ok(batches <= 3, `12 concurrent requests ran as ${batches} batches (max batch 8, window 20 ms)`);
  // Requests fixing different sub-models never share a batch: each is answered by its own.
  const [small, large] = s.grid.entries;
  const mixed = await Promise.all(
    xs
      .slice(0, 6)
      .map((x, i) =>
        s.app.inject(json({ inputs: [x], sub: (i % 2 ? large : small).id, probabilities: true })),
      ),
  );
  for (const [i, r] of mixed.entries()) {
    const e = i % 2 ? large : small;
    assert.equal(r.json().sub, e.id);
    const want = tf.tidy(() =>
      tf
        .softmax(
          s.model.forward(tf.tensor4d(xs[i], [1, IMAGE, IMAGE, 1]), e.sub, { mode: 'eval', key: e.id }),
        )
        .dataSync(),
    );
    r.json().probabilities[0].forEach((p: number, c: number) => assert.ok(Math.abs(p - want[c]) < 1e-5));
  }
  together.forEach((r, i) =>
    r.json().probabilities[0].forEach((p: number, c: number) => assert.ok(Math.abs(p - alone[i][c]) < 1e-5)),
  );
  await s.shutdown();
});

async function batchCount(s: ReturnType<typeof tinyServer>): Promise<number> {
  const text = (await s.app.inject({ method: 'GET', url: '/metrics' })).body;
  return Number(/^sortednet_batch_samples_count (\d+)/m.exec(text)![1]);
}

test('metrics and models: requests by status, latency histogram, queue, active sub-model, switches', async () => {
  const s = tinyServer({ targetP99Ms: 1000 });
  await s.app.inject(json({ inputs: [image(1)] }));
  await s.app.inject(json({ inputs: [[1]] }));
  const m = await s.app.inject({ method: 'GET', url: '/metrics' });
  assert.match(m.headers['content-type'] as string, /text\/plain/);
  const text = m.body;
  assert.match(text, /sortednet_requests_total\{route="\/predict",status="200"\} 1/);
  assert.match(text, /sortednet_requests_total\{route="\/predict",status="400"\} 1/);
  assert.match(text, /sortednet_request_duration_seconds_bucket\{le="0.1",route="\/predict"\} 2/);
  assert.match(text, /sortednet_queue_samples 0/);
  assert.match(text, new RegExp(`sortednet_active_submodel\\{sub="${s.grid.largest.id}"\\} 1`));
  assert.match(text, /sortednet_submodel_switches_total\{direction="down"\} 0/);
  assert.match(text, new RegExp(`sortednet_samples_total\\{sub="${s.grid.largest.id}"\\} 1`));
  const models = (await s.app.inject({ method: 'GET', url: '/models' })).json();
  assert.equal(models.subModels.length, 2);
  assert.deepEqual(models.adaptive, { targetP99Ms: 1000 });
  assert.equal(models.active, s.grid.largest.id);
  for (const sm of models.subModels) {
    assert.ok(sm.params > 0 && sm.flops > 0 && sm.batchMs.one > 0 && sm.onLadder);
    assert.equal(typeof sm.accuracy, 'number');
  }
  await s.shutdown();
});

test('shutdown drains: requests already in are answered, then the port is closed', async () => {
  const s = tinyServer({ windowMs: 500, maxBatch: 16 });
  await s.listen(0);
  const address = s.app.server.address();
  assert.ok(address && typeof address === 'object');
  assert.equal(address.address, '127.0.0.1', 'binds to loopback by default');
  const url = `http://127.0.0.1:${address.port}/predict`;
  const inflight = Array.from({ length: 10 }, (_, i) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [image(i)] }),
    }),
  );
  // Wait until they are queued (the 500 ms window holds them), then shut down.
  while ((await s.app.inject({ method: 'GET', url: '/health' })).json().queue < 10)
    await new Promise((r) => setTimeout(r, 1));
  const closed = s.shutdown();
  const answers = await Promise.all(inflight);
  assert.deepEqual(
    answers.map((r) => r.status),
    Array(10).fill(200),
  );
  // Each answer closes its connection, so no idle keep-alive socket holds the close open.
  assert.deepEqual(
    answers.map((r) => r.headers.get('connection')),
    Array(10).fill('close'),
  );
  await closed;
  await assert.rejects(fetch(url, { method: 'POST', body: '{}' }), 'the port no longer accepts');
});
