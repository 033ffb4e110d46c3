/** A classifier server whose batches run on an inference thread (node:worker_threads). */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../src/engine/backend.js';
import { MicroBatcher } from '../src/serve/batcher.js';
import { InferenceWorker } from '../src/serve/inference_worker.js';
import { loadServedModel } from '../src/serve/load.js';
import { createServer } from '../src/serve/server.js';
import { IMAGE, image, saveTinyRun } from './serve_fixture.js';

let dir: string;

before(async () => {
  await initEngine('cpu');
  dir = saveTinyRun('sortednet-worker-');
});
after(() => rmSync(dir, { recursive: true, force: true }));

const start = () => InferenceWorker.start({ runDir: dir, backend: 'cpu', maxBatch: 8 });
const predict = (inputs: number[][], sub?: string) => ({
  method: 'POST' as const,
  url: '/predict',
  payload: { inputs, probabilities: true, ...(sub ? { sub } : {}) },
});

test('inference thread: every sub-model timed there, and answers equal the event loop’s bit for bit (JSON and binary, one sample and a batch)', async () => {
  const worker = await start();
  const served = await loadServedModel(dir);
  assert.deepEqual(
    worker.timings.map((t) => t.id),
    served.subs.map((s) => s.id),
  );
  for (const t of worker.timings) assert.ok('one' in t && t.one > 0 && t.full > 0, JSON.stringify(t));
  const onLoop = createServer(served, { maxBatch: 8 });
  const onThread = createServer(await loadServedModel(dir), { maxBatch: 8 }, worker);
  const xs = Array.from({ length: 5 }, (_, i) => image(40 + i));
  try {
    for (const { id } of served.subs) {
      const a = await onLoop.app.inject(predict(xs, id));
      const b = await onThread.app.inject(predict(xs, id));
      assert.equal(b.statusCode, 200, b.body);
      assert.equal(b.json().sub, id);
      assert.deepEqual(b.json().probabilities, a.json().probabilities, id);
      const one = await onThread.app.inject(predict([xs[2]], id));
      assert.deepEqual(
        one.json().probabilities[0],
        a.json().probabilities[2],
        `${id}: alone as in the batch`,
      );
    }
    const bin = await onThread.app.inject({
      method: 'POST',
      url: '/predict?probabilities=true',
      headers: { 'content-type': 'application/octet-stream', 'x-shape': `2,${IMAGE},${IMAGE},1` },
      payload: Buffer.from(Float32Array.from([...xs[0], ...xs[1]]).buffer),
    });
    const want = (await onLoop.app.inject(predict(xs.slice(0, 2)))).json().probabilities as number[][];
    assert.deepEqual(bin.json().probabilities, want);
  } finally {
    await onLoop.shutdown();
    await onThread.shutdown();
  }
  // The server closed its thread with it.
  await assert.rejects(worker.run(served.subs[0].id, new Float32Array(IMAGE * IMAGE), 1), /stopped/);
  assert.equal(worker.failure, null, 'closed, not failed');
  // Closed while a batch runs: the batch is rejected (the batcher never waits on it forever).
  const other = await start();
  const running = other.run(served.subs[0].id, new Float32Array(IMAGE * IMAGE), 1);
  const rejected = assert.rejects(running, /the inference thread stopped: the server closed it/);
  await other.close();
  await rejected;
});

test('inference thread: concurrent requests share batches and each gets its own answer', async () => {
  const served = await loadServedModel(dir);
  const onLoop = createServer(served, { maxBatch: 8 });
  const onThread = createServer(await loadServedModel(dir), { maxBatch: 8, windowMs: 20 }, await start());
  try {
    const xs = Array.from({ length: 12 }, (_, i) => image(10 + i));
    const alone: number[][] = [];
    for (const x of xs) alone.push((await onLoop.app.inject(predict([x]))).json().probabilities[0]);
    const together = await Promise.all(xs.map((x) => onThread.app.inject(predict([x]))));
    together.forEach((r, i) => assert.deepEqual(r.json().probabilities[0], alone[i], `request ${i}`));
    const text = (await onThread.app.inject({ method: 'GET', url: '/metrics' })).body;
    const batches = Number(/^sortednet_batch_samples_count (\d+)/m.exec(text)![1]);
    assert.ok(batches <= 3, `12 concurrent requests ran as ${batches} batches (max batch 8, window 20 ms)`);
  } finally {
    await onLoop.shutdown();
    await onThread.shutdown();
  }
});

test('batcher: with batches on another thread, requests read meanwhile queue for the next batch and none counts as waiting unread', async () => {
  let now = 0;
  const ran: number[][] = [];
  const finish: { resolve: (o: number[]) => void; reject: (e: Error) => void }[] = [];
  const b: MicroBatcher<number, number> = new MicroBatcher<number, number>(
    { windowMs: 0, maxBatch: 8, maxQueue: 100 },
    (_sub, xs) => {
      ran.push(xs);
      return new Promise<number[]>((resolve, reject) => finish.push({ resolve, reject }));
    },
    () => 'd',
    () => {},
    () => now,
  );
  const first = [b.submit(1, 1, null), b.submit(2, 1, null)];
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(ran, [[1, 2]], 'the first batch is running');
  now += 30; // it runs 30 ms on its thread; meanwhile two more requests are read
  assert.equal(b.runningMs, 30, 'how long the batch on the thread has run (a stuck one shows)');
  const second = [b.submit(3, 1, null), b.submit(4, 1, null)];
  await new Promise((r) => setImmediate(r));
  assert.equal(ran.length, 1, 'one batch at a time');
  assert.equal(b.queuedSamples, 2);
  finish[0].resolve([10, 20]);
  assert.deepEqual(
    (await Promise.all(first)).map((d) => d.output),
    [10, 20],
  );
  assert.equal(b.runningMs, 0);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(ran[1], [3, 4], 'the next batch takes what queued meanwhile');
  now += 20; // the second batch runs 20 ms
  finish[1].resolve([30, 40]);
  const done = await Promise.all(second);
  assert.deepEqual(
    done.map((d) => [d.output, d.hiddenMs]),
    [
      [30, 0],
      [40, 0],
    ],
  );
  // Read right after that batch: on the event loop it would count the batch as waited; here nothing
  // was left unread.
  const next = b.submit(7, 1, null);
  await new Promise((r) => setImmediate(r));
  finish[2].resolve([70]);
  assert.deepEqual([(await next).output, (await next).hiddenMs], [70, 0]);
  // A batch that fails on its thread rejects its jobs; the batcher goes on.
  const failing = b.submit(5, 1, null);
  await new Promise((r) => setImmediate(r));
  const later = b.submit(6, 1, null);
  finish[3].reject(new Error('out of memory'));
  await assert.rejects(failing, /out of memory/);
  await new Promise((r) => setImmediate(r));
  finish[4].resolve([60]);
  assert.equal((await later).output, 60);
  await b.drain();
});

test('inference thread: a run that does not load fails the start naming why; a thread that dies makes /health and requests 503s saying so', async () => {
  await assert.rejects(
    InferenceWorker.start({ runDir: join(dir, 'missing'), backend: 'cpu', maxBatch: 8 }),
    /the inference thread did not start: .*missing/,
  );
  const broken = mkdtempSync(join(tmpdir(), 'sortednet-worker-broken-'));
  try {
    writeFileSync(join(broken, 'checkpoint.json'), '{ not json');
    await assert.rejects(
      InferenceWorker.start({ runDir: broken, backend: 'cpu', maxBatch: 8 }),
      /the inference thread did not start: .*checkpoint\.json/,
    );
  } finally {
    rmSync(broken, { recursive: true, force: true });
  }
  const worker = await start();
  const failures: string[] = [];
  worker.onFailure((why) => failures.push(why));
  const s = createServer(await loadServedModel(dir), { maxBatch: 8 }, worker);
  try {
    assert.equal((await s.app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    // The thread dies as an out-of-memory kill would end it: not through the server's close.
    await (worker as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    assert.equal(failures.length, 1);
    assert.match(failures[0], /exited with code/);
    const h = await s.app.inject({ method: 'GET', url: '/health' });
    assert.equal(h.statusCode, 503);
    assert.match(h.json().message, /cannot serve: it exited with code/);
    const r = await s.app.inject(predict([image(1)]));
    assert.equal(r.statusCode, 503);
    assert.equal(r.headers['retry-after'], '1');
    assert.match(r.json().message, /the inference thread stopped: .*retry on another instance/);
    // A handler registered after the thread died still hears of it (a server that failed while starting).
    const late = await new Promise<string>((resolve) => worker.onFailure(resolve));
    assert.match(late, /exited with code/);
  } finally {
    await s.shutdown();
  }
});
