/**
 * The options of `generate` that Hugging Face users expect: greedy by default, batched prompts
 * (left-padded, masked, stopping per sequence), stop strings cut exactly, repetition penalty and
 * no-repeat n-grams by their definitions, minNewTokens, logprobs, numReturnSequences, a draft
 * confidence threshold and width (MatFormer-style) drafts that keep speculative greedy exact.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { Transformer, type TransformerConfig } from '../src/models/transformer.js';
import { tinyLlama } from './lm_helpers.js';
import { generate } from '../src/infer/generate.js';
import { generateBatch } from '../src/infer/batch.js';
import { contextWarning, generateText, TextStreamer } from '../src/infer/generate_text.js';
import { applyRepetitionPenalty, bannedNgramTokens, makeProcessor } from '../src/infer/logits_process.js';
import { checkGenerateConfig } from '../src/infer/options.js';
import { createRng } from '../src/data/random.js';
import { train } from '../src/train/trainer.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { Grid } from '../src/sorted/grid.js';
import { tokenDataset } from '../src/data/tokens.js';
import { trainBpe } from '../src/tokenizer/train_bpe.js';

const V = 8;
const EVAL = { mode: 'eval', key: 't' } as const;
const llama = tinyLlama(V);
let model: Transformer;
let gpt: Transformer;

async function trained(config: TransformerConfig, seed: number): Promise<Transformer> {
  const m = new Transformer(config, seed);
  const r = createRng(5);
  const tokens = Int32Array.from(
    { length: 3000 },
    (_, i) => (((i * 3) % V) + (r.next() < 0.3 ? r.int(V) : 0)) % V,
  );
  await train(
    m,
    new Grid({ depth: [1, 2, 3, 4], ffn: [0.5, 1] }, m),
    tokenDataset('periodic', tokens, 16, V),
    resolveTrainConfig({ steps: 30, batchSize: 8, gAcc: 2, warmupSteps: 2 }),
  );
  return m;
}

before(async () => {
  await initEngine('wasm');
  model = await trained(llama, 3);
  gpt = await trained({ ...llama, arch: 'gpt' }, 4);
});

function lastLogits(m: Transformer, tokens: number[]): Float32Array {
  return tf.tidy(() => {
    const l = m.forward(tf.tensor2d(tokens, [1, tokens.length], 'int32'), {}, EVAL);
    return tf.slice(l, [0, tokens.length - 1, 0], [1, 1, -1]).dataSync() as Float32Array;
  });
}

test('defaults: generate() is greedy like the CLI, the server and Hugging Face', () => {
  const greedy = generate(model, [1, 2], { maxNewTokens: 12, temperature: 0 }).tokens;
  assert.deepEqual(generate(model, [1, 2], { maxNewTokens: 12 }).tokens, greedy);
  assert.deepEqual(
    generate(model, [1, 2], { maxNewTokens: 12, doSample: false, temperature: 2 }).tokens,
    greedy,
  );
  const sampled = generate(model, [1, 2], { maxNewTokens: 12, doSample: true, seed: 3 }).tokens;
  assert.deepEqual(sampled, generate(model, [1, 2], { maxNewTokens: 12, temperature: 1, seed: 3 }).tokens);
  // The default length: 100 or what the context has left (48 − 2).
  assert.equal(generate(model, [1, 2], {}).tokens.length, 46);
});

test('repetition penalty matches its definition on a hand-worked case (HF: divide positive, multiply negative)', () => {
  const logits = Float32Array.from([2, -1, 0.5, -3, 4]);
  applyRepetitionPenalty(logits, [0, 1, 1, 3], 2);
  // Seen: 0 (2 → 1), 1 (−1 → −2, once even though seen twice), 3 (−3 → −6); 2 and 4 untouched.
  assert.deepEqual([...logits], [1, -2, 0.5, -6, 4]);
  const p = makeProcessor({ repetitionPenalty: 2 })!;
  const raw = Float32Array.from([2, -1, 0.5, -3, 4]);
  assert.deepEqual([...p(raw, [4], 0)], [2, -1, 0.5, -3, 2]);
  assert.deepEqual([...raw], [2, -1, 0.5, -3, 4], 'the raw logits are left alone');
  // End to end: the first new token is the argmax of the penalised logits of the prompt.
  const prompt = [1, 2, 3, 1];
  const l = lastLogits(model, prompt);
  applyRepetitionPenalty(l, prompt, 3);
  const got = generate(model, prompt, { maxNewTokens: 1, repetitionPenalty: 3 }).tokens[0];
  assert.equal(got, l.indexOf(Math.max(...l)));
});

test('no-repeat n-grams: banned tokens by hand, and greedy output never repeats an n-gram', () => {
  assert.deepEqual(bannedNgramTokens([1, 2, 3, 1, 2], 3), [3]);
  assert.deepEqual(bannedNgramTokens([1, 2, 1, 5, 1], 2), [2, 5]);
  assert.deepEqual(bannedNgramTokens([4, 4], 1), [4]);
  assert.deepEqual(bannedNgramTokens([1, 2], 4), []);
  for (const n of [2, 3]) {
    const prompt = [1, 2, 3];
    const out = generate(model, prompt, { maxNewTokens: 30, noRepeatNgramSize: n }).tokens;
    const seq = [...prompt, ...out];
    const seen = new Set<string>();
    for (let i = 0; i + n <= seq.length; i++) {
      const g = seq.slice(i, i + n).join(',');
      assert.ok(!seen.has(g), `n-gram ${g} repeats in ${seq}`);
      seen.add(g);
    }
    // Without the processor this greedy run does repeat (the test has teeth).
    const plain = [...prompt, ...generate(model, prompt, { maxNewTokens: 30 }).tokens];
    const grams = plain.slice(0, -n + 1).map((_, i) => plain.slice(i, i + n).join(','));
    assert.ok(new Set(grams).size < grams.length, 'plain greedy should repeat some n-gram');
  }
});

test('minNewTokens: no stop token before it; stop tokens end each sequence', () => {
  const free = generate(model, [1, 2], { maxNewTokens: 20 }).tokens;
  const stopAt = free[1];
  assert.equal(generate(model, [1, 2], { maxNewTokens: 20, stopTokens: [stopAt] }).tokens.length, 2);
  const held = generate(model, [1, 2], { maxNewTokens: 20, stopTokens: [stopAt], minNewTokens: 8 });
  assert.ok(!held.tokens.slice(0, 7).includes(stopAt), `${held.tokens}`);
  assert.ok(held.tokens.length >= 8);
});

test('batched generation (left-padded, masked) equals one prompt at a time, llama and gpt', () => {
  const prompts = [[1], [2, 3, 4, 5, 6, 7], [0, 5, 2], [7, 7, 1, 3]];
  for (const m of [model, gpt]) {
    const one = prompts.map((p) => generate(m, p, { maxNewTokens: 16 }).tokens);
    const batch = generateBatch(m, prompts, { maxNewTokens: 16 });
    assert.deepEqual(
      batch.sequences.map((s) => s.tokens),
      one,
      m.config.arch ?? 'gpt',
    );
    // Per-sequence stopping: a stop token ends each row where it would end alone.
    const stop = one[1][3];
    const alone = prompts.map((p) => generate(m, p, { maxNewTokens: 16, stopTokens: [stop] }));
    const b = generateBatch(m, prompts, { maxNewTokens: 16, stopTokens: [stop] });
    assert.deepEqual(
      b.sequences.map((s) => [s.tokens, s.stoppedBy]),
      alone.map((s) => [s.tokens, s.stoppedBy]),
    );
    assert.ok(b.sequences.some((s) => s.stoppedBy === 'stop-token'));
  }
});

test('numReturnSequences samples each copy with seed + i; logprobs are the log-softmax of the logits', () => {
  const o = { maxNewTokens: 10, doSample: true, topK: 5, seed: 9 };
  const b = generateBatch(model, [[1, 2]], { ...o, numReturnSequences: 3 });
  assert.equal(b.sequences.length, 3);
  for (const [i, s] of b.sequences.entries())
    assert.deepEqual(s.tokens, generate(model, [1, 2], { ...o, seed: 9 + i }).tokens);
  assert.throws(() => generateBatch(model, [[1]], { numReturnSequences: 2 }), /needs sampling/);
  const r = generate(model, [1, 2], { maxNewTokens: 3, logprobs: true });
  const l = lastLogits(model, [1, 2]);
  const lse = Math.log(l.reduce((s, x) => s + Math.exp(x), 0));
  assert.ok(Math.abs(r.logprobs![0] - (l[r.tokens[0]] - lse)) < 1e-4);
  const spec = generate(model, [1, 2], { maxNewTokens: 3, logprobs: true, speculative: { draftDepth: 1 } });
  spec.logprobs!.forEach((x, i) => assert.ok(Math.abs(x - r.logprobs![i]) < 1e-4));
});

test('speculative greedy stays identical with a confidence threshold and with width (MatFormer) drafts', () => {
  const r = createRng(2);
  for (let i = 0; i < 6; i++) {
    const prompt = Array.from({ length: 1 + r.int(5) }, () => r.int(V));
    const want = generate(model, prompt, { maxNewTokens: 20 }).tokens;
    for (const speculative of [
      { draftDepth: 2, k: 6, confidenceThreshold: 0.6 },
      { draft: { ffn: 0.5 }, k: 4 },
      { draft: { depth: 2, ffn: 0.5 }, k: 3 },
      { draft: { heads: 1, ffn: 0.5 }, k: 4, confidenceThreshold: 0.5 },
    ]) {
      const got = generate(model, prompt, { maxNewTokens: 20, speculative });
      assert.deepEqual(got.tokens, want, `prompt [${prompt}] ${JSON.stringify(speculative)}`);
    }
  }
  // A narrower draft is really the narrower model: it is sometimes wrong; at full width, never.
  const narrow = generate(model, [1, 2], {
    maxNewTokens: 30,
    speculative: { draft: { heads: 1, ffn: 0.5 } },
  });
  assert.ok(narrow.accepted < narrow.proposed, `${narrow.accepted}/${narrow.proposed}`);
  const same = generate(model, [1, 2], { maxNewTokens: 30, speculative: { draft: { ffn: 1 } } });
  assert.equal(same.accepted, same.proposed);
  // The threshold ends drafts early: fewer proposals per verification.
  const long = generate(model, [1], {
    maxNewTokens: 30,
    speculative: { draftDepth: 1, k: 8, adaptive: false },
  });
  const short = generate(model, [1], {
    maxNewTokens: 30,
    speculative: { draftDepth: 1, k: 8, adaptive: false, confidenceThreshold: 0.99 },
  });
  assert.ok(
    short.proposed / short.fullPasses < long.proposed / long.fullPasses,
    `${short.proposed}/${short.fullPasses} vs ${long.proposed}/${long.fullPasses}`,
  );
});

const tokenizer = trainBpe(['the cat sat on the mat. the dog sat on the log. a cat and a dog.'], {
  vocabSize: 290,
});

test('stop strings cut the text exactly, streamed or not, even across token boundaries', () => {
  // The streamer on its own: text after the stop string never comes out.
  const ids = tokenizer.encode('the cat sat on the mat');
  for (const stop of ['sat', 't o', 'mat', 'e c']) {
    const s = new TextStreamer(tokenizer, [stop]);
    let streamed = '';
    for (const t of ids) streamed += s.push(t);
    streamed += s.flush();
    const full = 'the cat sat on the mat';
    assert.equal(s.text, full.slice(0, full.indexOf(stop)), stop);
    assert.equal(streamed, s.text, stop);
  }
  const s = new TextStreamer(tokenizer, ['zzz']);
  let streamed = '';
  for (const t of ids) streamed += s.push(t);
  assert.equal(streamed + s.flush(), 'the cat sat on the mat');
  // End to end: the greedy text cut before the first occurrence of a string it contains.
  const m = new Transformer({ ...llama, vocab: tokenizer.vocabSize }, 6);
  const lm = { model: m, tokenizer };
  const full = generateText(lm, 'the cat', { maxNewTokens: 30, stopAtEndOfText: false }).sequences[0].text;
  const stop = full.slice(5, 7);
  let streamedText = '';
  const cut = generateText(lm, 'the cat', {
    maxNewTokens: 30,
    stopAtEndOfText: false,
    stopStrings: [stop],
    onText: (_, piece) => (streamedText += piece),
  }).sequences[0];
  assert.equal(cut.text, full.slice(0, full.indexOf(stop)));
  assert.equal(streamedText, cut.text);
  assert.equal(cut.stoppedBy, 'stop-string');
  // A batch cuts each sequence at its own stop.
  const batch = generateText(lm, ['the cat', 'a dog'], {
    maxNewTokens: 30,
    stopAtEndOfText: false,
    stopStrings: [stop],
  });
  assert.equal(batch.sequences[0].text, cut.text);
  m.dispose();
});

test('generate says when a request runs past the window the model was trained on', () => {
  assert.equal(contextWarning(10, 20, 32), null);
  assert.equal(contextWarning(10, 20, undefined), null);
  assert.match(
    contextWarning(10, 30, 32)!,
    /the prompt \(10 tokens\) \+ up to 30 new tokens run past the 32-token window/,
  );
  assert.match(contextWarning(40, 5, 32)!, /the prompt \(40 tokens\) is longer than the 32-token window/);
  const m = new Transformer({ ...llama, vocab: tokenizer.vocabSize }, 6);
  const r = generateText({ model: m, tokenizer, trainedContext: 8 }, 'the cat sat', { maxNewTokens: 10 });
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0], /8-token window the model was trained on/);
  m.dispose();
});

test('the shared option schema names unknown fields and bad values', () => {
  assert.throws(() => checkGenerateConfig({ beams: 4 }), /unknown field 'beams'/);
  assert.throws(
    () => checkGenerateConfig({ repetitionPenalty: 0 }),
    /repetitionPenalty: must be greater than 0/,
  );
  assert.throws(
    () => checkGenerateConfig({ speculative: { draftDepth: 1, confidence: 2 } }),
    /speculative: unknown field 'confidence'/,
  );
  assert.throws(
    () => generate(model, [1], { doSample: true, temperature: 0 }),
    /doSample with temperature 0/,
  );
  assert.throws(() => generate(model, [1], { speculative: { draft: { ffn: 2 } } }), /ffn/);
  assert.throws(() => generate(model, [1], { speculative: {} }), /needs a draft/);
});

test('loadLm before the engine is initialised says so (and does not blame the checkpoint)', () => {
  const mod = fileURLToPath(new URL('../src/infer/load_lm.js', import.meta.url));
  const out = execFileSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { loadLm } from ${JSON.stringify(mod)}; loadLm('nowhere').catch((e) => console.log(e.message));`,
    ],
    { encoding: 'utf8' },
  );
  assert.match(out, /the tensor engine is not initialised; call `await initEngine\(\)`/);
});
