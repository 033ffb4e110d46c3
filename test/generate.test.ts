/** Sorted LM decoding: speculative output is identical to greedy; early exit at full depth is greedy. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine } from '../src/engine/backend.js';
import { Transformer } from '../src/models/transformer.js';
import { greedy, speculative, earlyExit } from '../src/infer/generate.js';
import { train } from '../src/train/trainer.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { Grid } from '../src/sorted/grid.js';
import { tokenDataset } from '../src/data/tokens.js';

let model: Transformer;
before(async () => {
  await initEngine('wasm');
  model = new Transformer(
    { task: 'lm', vocab: 12, dim: 16, heads: 2, headDim: 8, ffn: 32, layers: 4, maxLen: 32 },
    3,
  );
  // A little training on a periodic sequence so that drafts are sometimes right and sometimes wrong.
  const tokens = Int32Array.from({ length: 2000 }, (_, i) => (i * 7 + (i % 5 === 0 ? 3 : 0)) % 12);
  const grid = new Grid({ depth: [1, 2, 3, 4] }, model);
  const r = await train(
    model,
    grid,
    tokenDataset('periodic', tokens, 16, 12),
    resolveTrainConfig({ steps: 25, batchSize: 8, gAcc: 2, warmupSteps: 2 }),
  );
  assert.ok(r.finalLoss < 2.3, `LM training did not reduce the loss: ${r.finalLoss}`);
});

test('speculative decoding gives exactly the greedy output of the full model, for several drafts and k', () => {
  for (const prompt of [[1], [3, 4, 5], [0, 7, 2, 9, 4]]) {
    const want = greedy(model, prompt, 20).tokens;
    for (const draft of [{ depth: 1 }, { depth: 2 }, { depth: 1, heads: 1, ffn: 0.5 }]) {
      for (const k of [1, 3, 6]) {
        const got = speculative(model, prompt, 20, { draft, k });
        assert.deepEqual(got.tokens, want, `draft ${JSON.stringify(draft)} k ${k}`);
        assert.ok(got.fullPasses <= 20);
        assert.ok(got.accepted <= got.proposed);
      }
    }
  }
});

test('early exit: impossible thresholds give full greedy; zero thresholds give the shallow sub-model', () => {
  const prompt = [2, 9];
  const full = greedy(model, prompt, 12).tokens;
  const never = earlyExit(model, prompt, 12, { exits: [1, 2, 4], thresholds: [1.1, 1.1] });
  assert.deepEqual(never.tokens, full);
  assert.equal(never.meanExitDepth, 4);
  const always = earlyExit(model, prompt, 12, { exits: [1, 4], thresholds: [0] });
  assert.deepEqual(always.tokens, greedy(model, prompt, 12, { depth: 1 }).tokens);
  assert.equal(always.meanExitDepth, 1);
});

test('bad decoding requests are refused clearly', () => {
  assert.throws(() => greedy(model, [], 3), /prompt is empty/);
  assert.throws(() => greedy(model, [99], 3), /token 99 is outside the vocabulary 0\.\.11/);
  assert.throws(() => speculative(model, [1], 40, { draft: { depth: 1 } }), /must fit maxLen 32/);
  assert.throws(() => earlyExit(model, [1], 3, { exits: [2, 1], thresholds: [0.5] }), /must increase/);
  assert.throws(() => earlyExit(model, [1], 3, { exits: [1, 4], thresholds: [] }), /need 1 thresholds/);
});
