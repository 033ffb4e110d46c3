/** LM runs end to end through the CLI: train (tokenizer in the checkpoint), eval per exit, generate. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { loadMobyDick, loadTextCorpus } from '../src/data/text.js';
import { runGenerate, loadLm } from '../src/run/lm_run.js';
import { earlyExitArg } from '../src/cli/args.js';
import { earlyExitFlag, runCalibrateExit } from '../src/run/calibrate_run.js';
import { generate } from '../src/infer/generate.js';
import { parseSubModel } from '../src/sorted/submodel.js';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';

let dir: string;
let run: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lm-cli-'));
  writeFileSync(join(dir, 'book.txt'), loadMobyDick().slice(20_000, 80_000));
  run = join(dir, 'run');
  const log = console.log;
  console.log = () => {};
  try {
    const code = await main([
      'train',
      '--model',
      'lm-tiny',
      '--data',
      `text:${join(dir, 'book.txt')}`,
      '--run',
      run,
      '--steps',
      '6',
    ]);
    assert.equal(code, 0);
  } finally {
    console.log = log;
  }
});

test('train saves the tokenizer.json in the checkpoint and evaluates every exit', async () => {
  const ck = await loadCheckpoint(run);
  assert.equal(ck.meta.preprocess?.tokenizer, 'tokenizer.json');
  const json = JSON.parse(new TextDecoder().decode(ck.extraFiles.get('tokenizer.json')));
  assert.equal(json.model.type, 'BPE');
  const rows = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8')) as {
    id: string;
    perplexity: number;
  }[];
  assert.deepEqual(
    rows.map((r) => r.id),
    ['depth=1', 'depth=2', 'depth=3'],
  );
  for (const r of rows) assert.ok(r.perplexity > 1 && r.perplexity < 1000, `${r.id}: ${r.perplexity}`);
  const log = console.log;
  let printed = '';
  console.log = (s: string) => (printed += s + '\n');
  try {
    assert.equal(await main(['eval', '--run', run]), 0);
  } finally {
    console.log = log;
  }
  assert.match(printed, /\| depth=3 \| \d+ \|/);
});

test('generate streams text: greedy = speculative greedy, sampling is seeded', async () => {
  const texts: Record<string, string> = {};
  for (const [name, extra] of [
    ['greedy', {}],
    ['speculative', { speculative: true, draftDepth: 1, k: 3 }],
    ['early', { earlyExit: earlyExitArg('1:1.5,2:1.5') }],
  ] as const) {
    let out = '';
    let err = '';
    await runGenerate(
      { run, prompt: 'Call me', maxTokens: 12, stop: false, ...extra },
      (s) => (out += s),
      (s) => (err += s),
    );
    assert.ok(out.startsWith('Call me') && out.length > 'Call me'.length, out);
    assert.match(err, /tokens\/s/);
    texts[name] = out;
  }
  assert.equal(texts.speculative, texts.greedy);
  assert.equal(texts.early, texts.greedy);
  const sampled = async (seed: number) => {
    let out = '';
    await runGenerate(
      { run, prompt: 'Call me', maxTokens: 12, temperature: 1, topK: 20, seed, stop: false },
      (s) => (out += s),
      () => {},
    );
    return out;
  };
  assert.equal(await sampled(1), await sampled(1));
});

test("an extracted Mix'n'Match LM (per-block widths) keeps its tokenizer and generates what the slice does", async () => {
  const sub = 'blocks.0.ffn=16,blocks.2.attn=1';
  const small = join(dir, 'small');
  const log = console.log;
  console.log = () => {};
  try {
    assert.equal(await main(['extract', '--run', run, '--sub', sub, '--out', small]), 0);
  } finally {
    console.log = log;
  }
  const got = await loadLm(small);
  assert.deepEqual(got.model.config.ffn, [16, 64, 64]);
  const { model, tokenizer } = await loadLm(run);
  const prompt = tokenizer.encode('Call me');
  const tokens = [...prompt];
  for (let i = 0; i < 6; i++) {
    const logits = model.forward(tf.tensor2d(tokens, [1, tokens.length], 'int32'), parseSubModel(sub), {
      mode: 'eval',
      key: sub,
    });
    tokens.push(
      tf.tidy(() => tf.argMax(tf.slice(logits, [0, tokens.length - 1, 0], [1, 1, -1]), -1).dataSync()[0]),
    );
    logits.dispose();
  }
  const out = generate(got.model, prompt, { maxNewTokens: 6, temperature: 0 });
  assert.deepEqual(out.tokens, tokens.slice(prompt.length));
  model.dispose();
  got.model.dispose();
});

test('a GPT-style LM trains from the CLI and exports to ONNX with a KV cache that decodes as generate does', async () => {
  const gptRun = join(dir, 'gpt');
  const onnx = join(dir, 'gpt.onnx');
  const log = console.log;
  console.log = () => {};
  try {
    const args = ['--model', 'lm-gpt-tiny', '--data', `text:${join(dir, 'book.txt')}`, '--run', gptRun];
    assert.equal(await main(['train', ...args, '--steps', '3']), 0);
    assert.equal(await main(['export-onnx', '--run', gptRun, '--out', onnx, '--kv-cache']), 0);
  } finally {
    console.log = log;
  }
  const { model, tokenizer, trainedContext } = await loadLm(gptRun);
  assert.equal(trainedContext, model.config.maxLen, 'trained on the context it declares');
  const prompt = tokenizer.encode('Call me Ishmael');
  const want = generate(model, prompt, { maxNewTokens: 20 }).tokens;
  const session = await ort.InferenceSession.create(readFileSync(onnx));
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames.slice(1))
    feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 16]);
  let ids = prompt;
  const got: number[] = [];
  for (let i = 0; i < 20; i++) {
    feeds.input_ids = new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
    const r = await session.run(feeds);
    const V = model.config.vocab;
    const last = (r.logits.data as Float32Array).subarray((ids.length - 1) * V, ids.length * V);
    ids = [last.indexOf(Math.max(...last))];
    got.push(ids[0]);
    for (const name of session.inputNames.slice(1))
      feeds[name] = r[name.replace('past_key_values', 'present')];
  }
  assert.deepEqual(got, want);
  await session.release();
  model.dispose();
});

test('LM inputs are checked with clear messages', async () => {
  const quiet = () => {};
  await assert.rejects(runGenerate({ run, prompt: '' }, quiet, quiet), /--prompt is empty/);
  await assert.rejects(runGenerate({ run, prompt: 'x', draftDepth: 1 }, quiet, quiet), /need --speculative/);
  await assert.rejects(
    runGenerate({ run, prompt: 'x '.repeat(80) }, quiet, quiet),
    /exceed the context length 64/,
  );
  await assert.rejects(
    runGenerate({ run, prompt: 'x', exit: 9 }, quiet, quiet),
    /exit 9 must be a depth in 1\.\.3/,
  );
  await assert.rejects(
    runGenerate({ run: join(dir, 'nothing'), prompt: 'x' }, quiet, quiet),
    /no checkpoint|not found/,
  );
  assert.throws(() => earlyExitArg('2=0.9'), /DEPTH:THRESHOLD/);
  assert.throws(() => loadTextCorpus('text:/no/such/file.txt'), /not found; give a UTF-8 text file/);
  assert.throws(
    () => loadTextCorpus('wikipedia'),
    /unknown text corpus 'wikipedia'; use sotu, moby-dick or text:PATH/,
  );
  const bad = join(dir, 'latin1.txt');
  writeFileSync(bad, Buffer.from([0x63, 0x61, 0x66, 0xe9]));
  assert.throws(() => loadTextCorpus(`text:${bad}`), /is not valid UTF-8/);
  const { model, tokenizer } = await loadLm(run);
  assert.throws(() => generate(model, [tokenizer.vocabSize], { maxNewTokens: 1 }), /outside the vocabulary/);
});

test('calibrate-exit finds thresholds on a text file that reach the agreement, and generate uses them', async () => {
  let printed = '';
  const c = await runCalibrateExit(
    { run, text: join(dir, 'book.txt'), agreement: 0.9, windows: 4, window: 32, json: true },
    (s) => (printed += s),
  );
  const json = JSON.parse(printed) as { agreement: number; earlyExit: string; positions: number };
  assert.ok(json.agreement >= 0.9 && json.agreement === c.agreement, printed);
  assert.equal(json.positions, 4 * 24); // greedy continuations of 8-token prompts to 32 tokens
  assert.equal(json.earlyExit, earlyExitFlag(c));
  if (c.exits.length > 0)
    assert.deepEqual(earlyExitArg(json.earlyExit), { exits: c.exits, thresholds: c.thresholds });
  const silent = () => {};
  const flag = json.earlyExit || '1:1'; // no exit that pays: threshold 1 never leaves
  assert.equal(
    await runGenerate(
      { run, prompt: 'The whale', maxTokens: 8, earlyExit: earlyExitArg(flag) },
      silent,
      silent,
    ),
    0,
  );
  await assert.rejects(
    runGenerate({ run, prompt: 'x', exitMeasure: 'margin' }, silent, silent),
    /--exit-measure needs --early-exit/,
  );
  let text = '';
  await runCalibrateExit(
    { run, text: join(dir, 'book.txt'), agreement: 0.9, windows: 4, window: 32 },
    (s) => (text += s),
  );
  assert.match(text, /agreement with the full model \d+\.\d % \(wanted 90\.0 %\)/);
  assert.match(text, c.exits.length > 0 ? /--early-exit \d:[\d.]+/ : /decode without --early-exit/);
  await assert.rejects(
    runCalibrateExit({ run, text: join(dir, 'nothing.txt'), agreement: 0.9 }),
    /cannot read --text .*nothing\.txt/,
  );
  await assert.rejects(
    runCalibrateExit({ run, text: join(dir, 'book.txt'), agreement: 97 }),
    /agreement must be in \(0, 1\], e\.g\. 0\.97; got 97/,
  );
  await assert.rejects(
    main(['calibrate-exit', '--run', run, '--source', 'eval']),
    /'eval' is not a source; use greedy/,
  );
});
