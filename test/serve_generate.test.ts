/** POST /generate: streamed tokens (SSE) equal the library's KV-cached generate; text prompts use the run's tokenizer; bad options are 400s. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine } from '../src/engine/backend.js';
import { Transformer } from '../src/models/transformer.js';
import { generate } from '../src/infer/generate.js';
import { generateText } from '../src/infer/generate_text.js';
import { trainBpe } from '../src/tokenizer/train_bpe.js';
import { createServer } from '../src/serve/server.js';

before(async () => {
  await initEngine('cpu');
});

const tokenizer = trainBpe(['the sorted network serves the sorted model', 'a network of networks'], {
  vocabSize: 270,
});

function lmServer(withTokenizer = true) {
  const model = new Transformer(
    { task: 'lm', vocab: tokenizer.vocabSize, dim: 16, heads: 2, headDim: 8, ffn: 32, layers: 3, maxLen: 32 },
    3,
  );
  return {
    model,
    server: createServer({ model, subs: [], tokenizer: withTokenizer ? tokenizer : undefined }),
  };
}

const post = (payload: object) => ({ method: 'POST' as const, url: '/generate', payload });

test('generate: JSON and SSE answers are the library’s decoding; speculative greedy is identical to greedy', async () => {
  const { model, server } = lmServer();
  const prompt = 'the sorted';
  const ids = tokenizer.encode(prompt);
  const want = generate(model, ids, { maxNewTokens: 10, temperature: 0 }).tokens;
  const r = await server.app.inject(post({ prompt, maxNewTokens: 10, stream: false }));
  assert.equal(r.statusCode, 200, r.body);
  assert.deepEqual(r.json().tokens, want);
  assert.equal(r.json().text, tokenizer.decode(want));
  const spec = await server.app.inject(
    post({ tokens: ids, maxNewTokens: 10, stream: false, speculative: { draftDepth: 1 } }),
  );
  assert.deepEqual(spec.json().tokens, want);
  const shallow = await server.app.inject(post({ tokens: ids, maxNewTokens: 5, stream: false, exit: 1 }));
  assert.deepEqual(
    shallow.json().tokens,
    generate(model, ids, { maxNewTokens: 5, temperature: 0, exit: 1 }).tokens,
  );

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

test('generate: sampling is the library’s, repeatable for a seed', async () => {
  const { model, server } = lmServer();
  const ids = tokenizer.encode('a network');
  const ask = (o: object) => server.app.inject(post({ tokens: ids, maxNewTokens: 12, stream: false, ...o }));
  const a = (await ask({ temperature: 1, topP: 0.9, seed: 5 })).json().tokens;
  assert.deepEqual((await ask({ temperature: 1, topP: 0.9, seed: 5 })).json().tokens, a);
  assert.deepEqual(a, generate(model, ids, { maxNewTokens: 12, temperature: 1, topP: 0.9, seed: 5 }).tokens);
  await server.shutdown();
});

test('generate: the same options as the library — stop at <|endoftext|> by default, stop strings, batches', async () => {
  const { model, server } = lmServer();
  const eot = tokenizer.specials.get('<|endoftext|>')!;
  const ids = tokenizer.encode('the sorted');
  const lm = { model, tokenizer };
  const ask = async (o: object) => {
    const r = await server.app.inject(post({ maxNewTokens: 12, stream: false, ...o }));
    assert.equal(r.statusCode, 200, r.body);
    return r.json();
  };
  // Greedy and stopping at <|endoftext|> by default, as the CLI and the library's generateText.
  const want = generateText(lm, 'the sorted', { maxNewTokens: 12 }).sequences[0];
  const got = await ask({ prompt: 'the sorted' });
  assert.deepEqual(got.tokens, want.tokens);
  assert.equal(got.text, want.text);
  const forced = generate(model, ids, { maxNewTokens: 12, stopTokens: [eot] });
  assert.deepEqual(got.tokens, forced.tokens);
  const options = { repetitionPenalty: 1.5, noRepeatNgramSize: 2, logprobs: true };
  const pen = await ask({ tokens: ids, ...options });
  const lib = generate(model, ids, { maxNewTokens: 12, stopTokens: [eot], ...options });
  assert.deepEqual(pen.tokens, lib.tokens);
  assert.deepEqual(pen.logprobs, lib.logprobs);
  // A batch answers every prompt as the library decodes it alone.
  const batch = await ask({ prompt: ['the sorted', 'a network of'], stopAtEndOfText: false });
  const alone = generateText(lm, ['the sorted', 'a network of'], {
    maxNewTokens: 12,
    stopAtEndOfText: false,
  });
  assert.deepEqual(
    batch.sequences.map((s: { text: string }) => s.text),
    alone.sequences.map((s) => s.text),
  );
  const stop = alone.sequences[0].text.slice(2, 4);
  const cut = await ask({ prompt: 'the sorted', stopStrings: [stop], stopAtEndOfText: false });
  assert.equal(cut.text, alone.sequences[0].text.slice(0, alone.sequences[0].text.indexOf(stop)));
  assert.equal(cut.stoppedBy, 'stop-string');
  await server.shutdown();
});

test('generate: bad requests are 400s naming the problem', async () => {
  const { server } = lmServer();
  const cases: [object, RegExp][] = [
    [{ prompt: 'a', tokens: [1] }, /exactly one/],
    [{ maxNewTokens: 3 }, /exactly one/],
    [{ tokens: [300] }, /prompt token 300 at position 0 is outside the vocabulary/],
    [{ tokens: [1.5] }, /tokens\.0: expected integer, got float/],
    [{ tokens: [1], exit: 4 }, /exit/],
    [{ tokens: [1], speculative: { draftDepth: 3 } }, /draft/],
    [{ tokens: [1], maxNewTokens: 40 }, /exceed the context length 32/],
    [{ tokens: [1], temperature: -1 }, /temperature: must be greater than or equal to 0, got -1/],
    [{ tokens: [1], topP: 0 }, /topP: must be greater than 0, got 0/],
    [{ tokens: [1], maxNewTokens: 0 }, /maxNewTokens: must be greater than or equal to 1, got 0/],
    [{ tokens: [1], maxNewTokens: 2000 }, /maxNewTokens: at most 1024/],
    [{ tokens: [1], repetitionPenalty: -1 }, /repetitionPenalty: must be greater than 0/],
    [{ tokens: [1], numReturnSequences: 2 }, /needs sampling/],
    [
      { tokens: [1], speculative: { draftDepth: 1, confidence: 0.5 } },
      /speculative: unknown field 'confidence'/,
    ],
    [{ tokens: [1], beams: 4 }, /unknown field 'beams'/],
  ];
  for (const [body, message] of cases) {
    const r = await server.app.inject(post(body));
    assert.equal(r.statusCode, 400, `${JSON.stringify(body)}: ${r.body}`);
    assert.match(r.json().message, message, JSON.stringify(body));
  }
  const p = await server.app.inject({ method: 'POST', url: '/predict', payload: { inputs: [[1]] } });
  assert.equal(p.statusCode, 404);
  assert.match(p.json().message, /routes: POST \/generate/);
  const bare = lmServer(false).server;
  const t = await bare.app.inject(post({ prompt: 'a' }));
  assert.equal(t.statusCode, 400);
  assert.match(t.json().message, /no tokenizer/);
  await server.shutdown();
  await bare.shutdown();
});

test('generate: past the window the model was trained on, the answer says so (header, JSON, final event), as `generate` does', async () => {
  const model = new Transformer(
    { task: 'lm', vocab: tokenizer.vocabSize, dim: 16, heads: 2, headDim: 8, ffn: 32, layers: 3, maxLen: 32 },
    3,
  );
  const server = createServer({ model, subs: [], tokenizer, trainedContext: 8 });
  const ids = [1, 2, 3, 4, 5];
  const within = await server.app.inject(post({ tokens: ids, maxNewTokens: 3, stream: false }));
  assert.equal(within.statusCode, 200, within.body);
  assert.equal(within.headers['x-sortednet-warning'], undefined);
  assert.equal(within.json().warnings, undefined);

  const past = await server.app.inject(post({ tokens: ids, maxNewTokens: 4, stream: false }));
  assert.equal(past.statusCode, 200, past.body);
  const want =
    'the prompt (5 tokens) + up to 4 new tokens run past the 8-token window the model was trained on; text beyond it is less reliable (perplexity rises)';
  assert.deepEqual(past.json().warnings, [want]);
  assert.equal(past.headers['x-sortednet-warning'], want);
  // The same words as the library's generateText (what the CLI prints).
  assert.deepEqual(
    generateText({ model, tokenizer, trainedContext: 8 }, tokenizer.decode(ids), { maxNewTokens: 4 }).warnings
      .length,
    1,
  );

  const batch = await server.app.inject(
    post({ tokens: [ids, [1, 2, 3, 4, 5, 6, 7, 8, 9]], maxNewTokens: 2 }),
  );
  assert.equal(batch.statusCode, 200, batch.body);
  assert.match(batch.json().warnings.join('\n'), /the prompt \(9 tokens\) is longer than the 8-token window/);

  const url = await server.listen(0);
  const res = await fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tokens: ids, maxNewTokens: 4 }),
  });
  assert.equal(res.headers.get('x-sortednet-warning'), want);
  const done = (await res.text()).split('\n\n').find((e) => e.startsWith('event: done'))!;
  assert.deepEqual(JSON.parse(done.split('data: ')[1]).warnings, [want]);
  await server.shutdown();
});
