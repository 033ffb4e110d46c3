/** Fuzz: 10,000+ malformed requests; every one a 4xx with a message, none a 5xx, the server still healthy. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import type { InjectOptions } from 'fastify';
import { initEngine } from '../src/engine/backend.js';
import { IMAGE, image, tinyServer } from './serve_fixture.js';
import { rng } from './helpers.js';

before(async () => {
  await initEngine('cpu');
});

const N = 10_500;
const SIZE = IMAGE * IMAGE;

/** A malformed request, never a valid one: each case breaks one thing a valid request needs. */
function malformed(r: () => number): InjectOptions {
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const junk = (): unknown =>
    pick([
      () => null,
      () => true,
      () => 'x'.repeat(int(10)),
      () => NaN,
      () => ({ [String(int(100))]: int(5) }),
      () => [],
      () => [[[int(3)]]],
      () => '1',
    ])();
  const valid = () => Array.from({ length: 1 + int(3) }, (_, i) => image(i));
  const post = (
    payload: string | Buffer,
    type: string,
    headers: Record<string, string> = {},
    url = '/predict',
  ) => ({
    method: 'POST' as const,
    url,
    headers: { 'content-type': type, ...headers },
    payload,
  });
  switch (int(12)) {
    case 0: {
      // Valid JSON cut short.
      const text = JSON.stringify({ inputs: valid() });
      return post(text.slice(0, int(text.length - 1)), 'application/json');
    }
    case 1: {
      // One value of one sample replaced by junk.
      const inputs = valid();
      inputs[int(inputs.length)][int(SIZE)] = junk() as number;
      return post(JSON.stringify({ inputs }), 'application/json');
    }
    case 2: {
      // A sample one value short or long.
      const inputs = valid();
      const s = inputs[int(inputs.length)];
      if (r() < 0.5) s.pop();
      else s.push(1);
      return post(JSON.stringify({ inputs }), 'application/json');
    }
    case 3:
      // A random JSON value instead of the body object, or inputs of the wrong kind.
      return post(JSON.stringify(r() < 0.5 ? junk() : { inputs: junk() }), 'application/json');
    case 4:
      // An unknown field, or a budget of the wrong type.
      return post(
        JSON.stringify({
          inputs: valid(),
          [pick(['maxFlops', 'maxLatencyMs', 'sub', 'probabilities', 'extra'])]: pick([
            'x',
            -1,
            [],
            {},
            null,
            0,
          ]),
        }),
        'application/json',
      );
    case 5:
      // A sub-model that does not exist or does not parse.
      return post(
        JSON.stringify({
          inputs: valid(),
          sub: pick(['~', 'depth=', 'depth=9', 'width=0', 'width=1.5', 'heads=2', `q${int(1e6)}`]),
        }),
        'application/json',
      );
    case 6: {
      // Binary of a length the shape does not match (truncated or padded).
      const n = 1 + int(3);
      let bytes = n * SIZE * 4 + (int(2) ? -1 : 1) * (1 + int(SIZE * 4 - 1));
      if (bytes < 0) bytes = 1;
      return post(Buffer.alloc(bytes), 'application/octet-stream', { 'x-shape': `${n},${IMAGE},${IMAGE},1` });
    }
    case 7: {
      // Binary with a NaN or an infinity somewhere.
      const x = new Float32Array(SIZE * (1 + int(2)));
      x[int(x.length)] = pick([NaN, Infinity, -Infinity]);
      return post(Buffer.from(x.buffer), 'application/octet-stream', {
        'x-shape': `${x.length / SIZE},${SIZE}`,
      });
    }
    case 8:
      // Binary with a broken shape header (or none).
      return post(
        Buffer.alloc(SIZE * 4),
        'application/octet-stream',
        r() < 0.2
          ? {}
          : {
              'x-shape': pick([
                '',
                ',',
                '1',
                '1,2,3,4,5,6,7,8,9',
                '0,64',
                '-1,64',
                'a,b',
                '1,64.5',
                '99999999999,1',
                '1,8,8,2',
                '1,63',
              ]),
            },
      );
    case 9: {
      // Random bytes under a random content type.
      const bytes = Buffer.from(Array.from({ length: int(300) }, () => int(256)));
      return post(
        bytes,
        pick(['application/json', 'text/plain', 'application/xml', 'multipart/form-data', 'image/png']),
      );
    }
    case 10:
      // Bad query strings.
      return post(
        JSON.stringify({ inputs: valid() }),
        'application/json',
        {},
        pick([
          '/predict?maxFlops=abc',
          '/predict?maxLatencyMs=-3',
          '/predict?sub=',
          '/predict?probabilities=yes',
          `/predict?x${int(100)}=1`,
          '/predict?maxFlops=1e-30',
        ]),
      );
    default:
      // Wrong routes and methods.
      return {
        method: pick(['GET', 'PUT', 'DELETE', 'PATCH'] as const),
        url: pick(['/predict', '/predict/1', '/', '/admin', '/models/x', '/%zz']),
      };
  }
}

test(`fuzz: ${N} malformed requests, 0 5xx, every one a 4xx with a message, /health still answers`, async () => {
  const s = tinyServer({ bodyLimit: 64 * 1024 });
  const r = rng(2024);
  const byStatus = new Map<number, number>();
  for (let i = 0; i < N; i++) {
    const req = malformed(r);
    const res = await s.app.inject(req);
    byStatus.set(res.statusCode, (byStatus.get(res.statusCode) ?? 0) + 1);
    assert.ok(
      res.statusCode >= 400 && res.statusCode < 500,
      `request ${i} (${req.method} ${req.url}): ${res.statusCode} ${res.body.slice(0, 300)}`,
    );
    assert.equal(typeof res.json().message, 'string', `request ${i}: no message`);
  }
  assert.equal(
    [...byStatus.values()].reduce((a, b) => a + b, 0),
    N,
  );
  const health = await s.app.inject({ method: 'GET', url: '/health' });
  assert.equal(health.statusCode, 200);
  const ok = await s.app.inject({ method: 'POST', url: '/predict', payload: { inputs: [image(1)] } });
  assert.equal(ok.statusCode, 200, 'a valid request still works after the fuzzing');
  console.log(`# status counts: ${JSON.stringify(Object.fromEntries(byStatus))}`);
  await s.shutdown();
});
