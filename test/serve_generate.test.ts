/** POST /generate: streamed tokens (SSE) equal the library's greedy decoding; sampling is seeded; bad options are 400s. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine } from '../src/engine/backend.js';
import { Transformer } from '../src/models/transformer.js';
import { greedy } from '../src/infer/generate.js';
import { createServer } from '../src/serve/server.js';
import { sampleToken } from '../src/serve/decode.js';

before(async () => {
  await initEngine('cpu');
});

function lmServer() {
  const model = new Transformer(
    { task: 'lm', vocab: 257, dim: 16, heads: 2, headDim: 8, ffn: 32, layers: 3, maxLen: 32 },
    3,
  );
  return { model, server: createServer({ model, subs: [] }) };
}

const post = (payload: object) => ({ method: 'POST' as const, url: '/generate', payload });

test('generate: JSON and SSE answers are greedy decoding; speculative is identical to it', async () => {
  const { model, server } = lmServer();
  const prompt = 'sorted';
  const ids = Array.from(new TextEncoder().encode(prompt), (b) => b + 1);
  const want = greedy(model, ids, 10).tokens;
  const r = await server.app.inject(post({ prompt, maxNewTokens: 10, stream: false }));
  assert.equal(r.statusCode, 200, r.body);
  assert.deepEqual(r.json().tokens, want);
  const spec = await server.app.inject(
    post({ tokens: ids, maxNewTokens: 10, stream: false, speculative: { draftDepth: 1 } }),
  );
  assert.deepEqual(spec.json().tokens, want);
  const shallow = await server.app.inject(post({ tokens: ids, maxNewTokens: 5, stream: false, exit: 1 }));
  assert.deepEqual(shallow.json().tokens, greedy(model, ids, 5, { depth: 1 }).tokens);

  const url = await server.listen(0);
  const res = await fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, maxNewTokens: 10 }),
  });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const events = (await res.text()).trim().split('\n\n');
  const tokens = events.filter((e) => e.startsWith('data: ')).map((e) => JSON.parse(e.slice(6)).token);
  assert.deepEqual(tokens, want);
  assert.match(events[events.length - 1], /^event: done\ndata: \{"tokens":\[/);
  await server.shutdown();
});

test('generate: sampling is repeatable for a seed; top-k 1 is greedy', async () => {
  const { model, server } = lmServer();
  const ask = (o: object) => server.app.inject(post({ prompt: 'ab', maxNewTokens: 12, stream: false, ...o }));
  const a = (await ask({ temperature: 1, seed: 5 })).json().tokens;
  assert.deepEqual((await ask({ temperature: 1, seed: 5 })).json().tokens, a);
  const ids = [98, 99];
  assert.deepEqual(
    (await ask({ temperature: 1, topK: 1, seed: 9 })).json().tokens,
    greedy(model, ids, 12).tokens,
  );
  // top-p keeps the smallest set reaching p; 0.5 of [0.6, 0.3, 0.1] keeps only the first.
  const logits = Float32Array.from([Math.log(0.6), Math.log(0.3), Math.log(0.1)]);
  for (const u of [0, 0.5, 0.99])
    assert.equal(sampleToken(logits, { maxNewTokens: 1, temperature: 1, topP: 0.5 }, u), 0);
  assert.equal(sampleToken(logits, { maxNewTokens: 1, temperature: 1 }, 0.95), 2);
  await server.shutdown();
});

test('generate: bad requests are 400s naming the problem', async () => {
  const { server } = lmServer();
  const cases: [object, RegExp][] = [
    [{ prompt: 'a', tokens: [1] }, /exactly one/],
    [{ maxNewTokens: 3 }, /exactly one/],
    [{ tokens: [300] }, /tokens\[0\] = 300 is outside the vocabulary 0\.\.256/],
    [{ tokens: [1.5] }, /must be integer/],
    [{ prompt: 'a', exit: 4 }, /exit 4 > the model's 3 layers/],
    [{ prompt: 'a', speculative: { draftDepth: 3 } }, /draftDepth 3 must be < the model's 3 layers/],
    [{ prompt: 'a', speculative: { draftDepth: 1 }, temperature: 1 }, /greedy/],
    [{ prompt: 'a', speculative: { draftDepth: 1 }, maxNewTokens: 40 }, /must fit the context of 32/],
    [{ prompt: 'a', temperature: -1 }, /temperature must be >= 0/],
    [{ prompt: 'a', topP: 0 }, /topP must be > 0/],
    [{ prompt: 'a', maxNewTokens: 0 }, /maxNewTokens must be >= 1/],
    [{ prompt: 'a', beams: 4 }, /unknown field 'beams'/],
  ];
  for (const [body, message] of cases) {
    const r = await server.app.inject(post(body));
    assert.equal(r.statusCode, 400, JSON.stringify(body));
    assert.match(r.json().message, message, JSON.stringify(body));
  }
  const p = await server.app.inject({ method: 'POST', url: '/predict', payload: { inputs: [[1]] } });
  assert.equal(p.statusCode, 404);
  assert.match(p.json().message, /routes: POST \/generate/);
  await server.shutdown();
});
