/**
 * The server under pressure: finite-but-huge inputs are 400s (never a 500, never a non-finite
 * answer), bodies are bounded by the model's input × the batch limit, admission control refuses
 * before a body is read, a shutdown finishes what it accepted and ends streams past the grace
 * period with a final event, and the controller holds its target without oscillating when the
 * machine becomes busy (simulated clock).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest, Agent } from 'node:http';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { initEngine } from '../src/engine/backend.js';
import { Transformer } from '../src/models/transformer.js';
import { createServer } from '../src/serve/server.js';
import { maxWaitOf } from '../src/serve/classifier.js';
import { IMAGE, image, threeRungs, tinyServer } from './serve_fixture.js';
import { rng } from './helpers.js';

before(async () => {
  await initEngine('cpu');
});

const SIZE = IMAGE * IMAGE;
const json = (payload: unknown) => ({ method: 'POST' as const, url: '/predict', payload: payload as object });

test('huge inputs: beyond float32 or overflowing the model, a 400 naming the field; nothing non-finite answered', async () => {
  const s = tinyServer();
  const beyond = image(1);
  beyond[5] = 1e39;
  const r1 = await s.app.inject(json({ inputs: [image(0), beyond] }));
  assert.equal(r1.statusCode, 400, r1.body);
  assert.match(r1.json().message, /inputs\[1\]\[5\] is 1e\+39; expected a finite float32 value/);

  const r2 = await s.app.inject(json({ inputs: [image(0), Array(SIZE).fill(3e38)] }));
  assert.equal(r2.statusCode, 400, r2.body);
  assert.match(
    r2.json().message,
    /inputs\[1\] makes the model's output non-finite \(its largest value is 3\.00e\+38\)/,
  );

  const f32 = new Float32Array(SIZE).fill(-3e38);
  const r3 = await s.app.inject({
    method: 'POST',
    url: '/predict',
    headers: { 'content-type': 'application/octet-stream', 'x-shape': `1,${SIZE}` },
    payload: Buffer.from(f32.buffer),
  });
  assert.equal(r3.statusCode, 400, r3.body);
  assert.match(r3.json().message, /sample 0 makes the model's output non-finite/);

  // Random magnitudes up to and beyond float32 in random places: a 400 or a finite answer, never a 5xx.
  const r = rng(25);
  let ok = 0;
  for (let i = 0; i < 300; i++) {
    const x = image(i);
    for (let k = 0; k < 1 + Math.floor(r() * 4); k++)
      x[Math.floor(r() * SIZE)] = (r() < 0.5 ? -1 : 1) * 10 ** (r() * 40);
    const a = await s.app.inject(json({ inputs: [x], probabilities: true }));
    assert.ok(a.statusCode === 200 || a.statusCode === 400, `${a.statusCode}: ${a.body}`);
    if (a.statusCode === 200) {
      ok++;
      assert.ok((a.json().probabilities[0] as number[]).every(Number.isFinite));
    }
  }
  assert.ok(ok > 0, 'moderate values are still answered');
  await s.shutdown();
});

test('bodies: the limit follows the input shape × batch limit; larger bodies are 413s naming the binary path', async () => {
  const s = tinyServer(); // 8×8×1 inputs, batch limit 8
  const big = JSON.stringify({ inputs: Array.from({ length: 8 }, (_, i) => image(i)) }).padEnd(4 << 20, ' ');
  const r = await s.app.inject({
    method: 'POST',
    url: '/predict',
    headers: { 'content-type': 'application/json' },
    payload: big,
  });
  assert.equal(r.statusCode, 413, r.body);
  assert.match(r.json().message, /too large: more than \d+ bytes.*x-shape/);
  const full = await s.app.inject(json({ inputs: Array.from({ length: 8 }, (_, i) => image(i)) }));
  assert.equal(full.statusCode, 200, 'a full batch as JSON fits');
  await s.shutdown();
});

/** Sends headers and half the declared body, and holds the socket open. */
function halfRequest(port: number, length: number) {
  const socket = connect(port, '127.0.0.1');
  socket.write(
    `POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n`,
  );
  socket.write(' '.repeat(length / 2));
  return socket;
}

function get(
  port: number,
  path: string,
  agent?: Agent,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('admission control: beyond the in-flight limit a request is refused (503, Retry-After) before its body is read; /health still answers', async () => {
  const s = tinyServer({ maxInflight: 2 });
  await s.listen(0);
  const port = (s.app.server.address() as { port: number }).port;
  const held = [halfRequest(port, 2000), halfRequest(port, 2000)];
  await new Promise((r) => setTimeout(r, 200));
  const third = await new Promise<{ status: number; retry?: string; body: string }>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/predict',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': 10_000 },
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, retry: res.headers['retry-after'] as string, body }),
        );
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => reject(new Error('no answer from the headers alone: nothing refused it')));
    req.write('{'); // the body never completes: the answer must come from the headers alone
  });
  assert.equal(third.status, 503, third.body);
  assert.equal(third.retry, '1');
  assert.match(third.body, /holds 2 requests/);
  const h = await get(port, '/health');
  assert.equal(h.status, 200);
  for (const sock of held) sock.destroy();
  await s.shutdown(1000);
});

test('queue deadline: a request that waited past --max-wait-ms is a 503 with Retry-After; none by default', async () => {
  // 1 µs: every request waits longer than that for its batch (it is dispatched on a later turn).
  const s = tinyServer({ maxWaitMs: 0.001 });
  const r = await s.app.inject(json({ inputs: [image(0)] }));
  assert.equal(r.statusCode, 503, r.body);
  assert.equal(r.headers['retry-after'], '1');
  assert.match(r.body, /waited [\d.]+ ms for its batch \(limit 0\.001 ms\): the server is overloaded/);
  await s.shutdown(1000);
  const ok = tinyServer({ maxWaitMs: 0 });
  assert.equal((await ok.app.inject(json({ inputs: [image(0)] }))).statusCode, 200, '0: no deadline');
  await ok.shutdown(1000);
  assert.equal(maxWaitOf({ targetP99Ms: 50 }), undefined, 'none unless asked');
  assert.equal(maxWaitOf({ targetP99Ms: 50, maxWaitMs: 25 }), 25);
  assert.equal(maxWaitOf({ maxWaitMs: 0 }), undefined);
});

test('shutdown: every request on open keep-alive sockets is answered (200, or 503 once draining); none is reset', async () => {
  const s = tinyServer({ windowMs: 5 });
  await s.listen(0);
  const port = (s.app.server.address() as { port: number }).port;
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const body = JSON.stringify({ inputs: [image(1)] });
  const outcomes = { ok: 0, refused: 0, reset: 0, other: [] as string[] };
  let stop = false;
  const post = () =>
    new Promise<void>((resolve) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/predict',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) outcomes.ok++;
            // A client told the server is shutting down goes elsewhere (as a load balancer does).
            else if (res.statusCode === 503) {
              outcomes.refused++;
              stop = true;
            } else outcomes.other.push(String(res.statusCode));
            resolve();
          });
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => {
        // A refused connection was never accepted; a reset one was.
        if (e.code === 'ECONNREFUSED') stop = true;
        else {
          outcomes.reset++;
          outcomes.other.push(e.code ?? e.message);
        }
        resolve();
      });
      req.end(body);
    });
  const loops = Array.from({ length: 16 }, async () => {
    while (!stop) await post();
  });
  await new Promise((r) => setTimeout(r, 300));
  const report = await s.shutdown(5000);
  stop = true;
  await Promise.all(loops);
  agent.destroy();
  assert.ok(outcomes.ok > 0);
  assert.equal(outcomes.reset, 0, `requests reset: ${JSON.stringify(outcomes)}`);
  assert.deepEqual(outcomes.other, []);
  assert.equal(report.dropped, 0);
});

/**
 * Clients in a process of their own: `n` kept-alive connections each answered once, then (on a
 * line on stdin) one more request on each and `n` requests on new connections, all at once.
 * Prints every outcome: a status, or the error the client saw.
 */
const BURST_CLIENT = `
import { Agent, request } from 'node:http';
const [port, n] = process.argv.slice(-2).map(Number);
const agent = new Agent({ keepAlive: true, maxSockets: n });
const post = (a) => new Promise((resolve) => {
  const req = request({ host: '127.0.0.1', port, path: '/health', agent: a }, (res) => {
    res.resume();
    res.on('end', () => resolve(String(res.statusCode)));
  });
  req.on('error', (e) => resolve(e.code ?? e.message));
  req.end();
});
const first = await Promise.all(Array.from({ length: n }, () => post(agent)));
console.log(JSON.stringify({ ready: first }));
process.stdin.once('data', async () => {
  const fresh = new Agent({ keepAlive: false });
  const burst = await Promise.all([
    ...Array.from({ length: n }, () => post(agent)),
    ...Array.from({ length: n }, () => post(fresh)),
  ]);
  console.log(JSON.stringify({ burst }));
  agent.destroy();
  process.exit(0);
});
`;

test('shutdown: a burst on kept-alive and new connections while the server is stalled is answered, none reset', async () => {
  const s = tinyServer();
  await s.listen(0);
  const port = (s.app.server.address() as { port: number }).port;
  const child = spawn(process.execPath, ['--input-type=module', '-e', BURST_CLIENT, String(port), '32'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  let text = '';
  const line = () =>
    new Promise<string>((resolve) => {
      const take = () => {
        const nl = text.indexOf('\n');
        if (nl < 0) return false;
        resolve(text.slice(0, nl));
        text = text.slice(nl + 1);
        return true;
      };
      if (take()) return;
      const on = (d: Buffer) => {
        text += d.toString();
        if (take()) child.stdout!.off('data', on);
      };
      child.stdout!.on('data', on);
    });
  const ready = JSON.parse(await line()) as { ready: string[] };
  lines.push(...ready.ready);
  assert.ok(
    ready.ready.every((x) => x === '200'),
    ready.ready.join(' '),
  );
  // The drain starts; the clients send at once while this process does not run (a long batch,
  // or a busy machine that gives it no core): their requests wait in the kernel, in sockets
  // already accepted and in the accept queue.
  child.stdin!.write('go\n');
  const report = s.shutdown(5000);
  const t = performance.now();
  while (performance.now() - t < 600); // stalled: the drain's timers fall due meanwhile
  const { burst } = JSON.parse(await line()) as { burst: string[] };
  const r = await report;
  const counts: Record<string, number> = {};
  for (const b of burst) counts[b] = (counts[b] ?? 0) + 1;
  assert.deepEqual(
    counts,
    { 503: 64 },
    `every request of the burst is refused with an answer: ${JSON.stringify(counts)}`,
  );
  assert.equal(r.refused, 64);
  assert.equal(r.dropped, 0);
});

test('shutdown: /generate streams finish within the grace period, and past it end with a final event saying why', async () => {
  const model = new Transformer(
    { task: 'lm', vocab: 50, dim: 16, heads: 2, headDim: 8, ffn: 32, layers: 2, maxLen: 1024 },
    3,
  );
  const open = async (graceMs: number, maxNewTokens: number) => {
    const server = createServer({ model, subs: [] });
    const url = await server.listen(0);
    const res = await fetch(`${url}/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tokens: [1, 2, 3], maxNewTokens, temperature: 1, seed: 1 }),
    });
    const reader = res.body!.getReader();
    await reader.read(); // the stream has started
    const report = server.shutdown(graceMs);
    let text = '';
    for (let c = await reader.read(); !c.done; c = await reader.read())
      text += new TextDecoder().decode(c.value);
    return { text, report: await report };
  };
  const short = await open(10_000, 8);
  assert.match(short.text, /event: done\n/);
  assert.deepEqual(short.report, { finished: 1, refused: 0, cutStreams: 0, dropped: 0 });

  const long = await open(50, 1000);
  assert.match(
    long.text,
    /event: shutdown\ndata: \{"reason":"the server is shutting down and the grace period of 50 ms ended"/,
  );
  assert.equal(long.report.cutStreams, 1);
  assert.equal(long.report.dropped, 0);
});

/** Three rungs timed at start-up on a quiet machine: a batch of 8 takes 2, 8 and 32 ms. */
const ladder = (holdMs = 1000) => threeRungs(holdMs);

test('controller: on a machine that became 4× slower, a move down lands on a rung that fits at the slowdown measured now', () => {
  const { c, times } = ladder();
  // Only the full model has run since the machine got busy: its batches of 8 take 128 ms, not 32.
  for (let t = 0; t < 500; t += 130) times.observe('full', 8, 128, t);
  assert.ok(times.slowdown > 2.5, `measured slowdown ${times.slowdown}`);
  // 16 queued. At start-up speed mid would fit (2 + 8 + 2·… ≈ 20 ms); at 4× it takes ≈ 74 ms.
  const s = c.tick(500, 16);
  assert.equal(s?.to, 'small', `moved to ${s?.to}: ${s?.reason}`);
  assert.ok(c.predict('mid', 16) > 50, 'mid is predicted at the measured slowdown');
});

test('controller: a move up that fails doubles the hold before the next (no oscillation on a machine that comes and goes)', () => {
  const { c, switches } = ladder(1000);
  c.tick(0, 64); // down to small
  let t = 0;
  const calm = (until: number) => {
    for (; t < until; t += 50) {
      for (let k = 0; k < 5; k++) {
        c.arrive(t);
        c.observe(5, t);
      }
      c.tick(t, 0);
    }
  };
  calm(1200);
  assert.deepEqual(switches, ['down:small', 'up:mid']);
  // The machine is busy again: the p99 at mid misses the target, so the move up failed.
  for (let k = 0; k < 10; k++) c.observe(120, t);
  c.tick(t, 0);
  assert.deepEqual(switches, ['down:small', 'up:mid', 'down:small']);
  assert.equal(c.holdMs, 2000);
  calm(t + 1500);
  assert.equal(switches.length, 3, 'no move up after the base hold: it waits the doubled hold');
  calm(t + 1000);
  assert.equal(switches[3], 'up:mid');
});
