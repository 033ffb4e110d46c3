/**
 * Calibrated early exit: the thresholds it picks reach the wanted agreement on the calibration
 * positions (recomputed here from uncached forwards), agreement 1 reproduces greedy decoding
 * exactly while tokens still leave early, the search finds the single-exit optimum, and bad
 * requests are refused by name.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { Transformer } from '../src/models/transformer.js';
import { tinyLlama } from './lm_helpers.js';
import { generate } from '../src/infer/generate.js';
import {
  calibrateEarlyExit,
  chooseThresholds,
  evaluateThresholds,
  type ExitStats,
} from '../src/infer/calibrate.js';
import { softmax } from '../src/infer/sampling.js';
import { createRng } from '../src/data/random.js';
import { train } from '../src/train/trainer.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { Grid } from '../src/sorted/grid.js';
import { tokenDataset } from '../src/data/tokens.js';

const V = 6;
const EVAL = { mode: 'eval', key: 't' } as const;
let model: Transformer;
let stream: number[];

before(async () => {
  await initEngine('wasm');
  // A noisy periodic sequence, lightly trained: shallow exits are right on some tokens only.
  const r = createRng(5);
  stream = Array.from({ length: 3000 }, (_, i) => (((i * 7) % V) + (r.next() < 0.3 ? r.int(V) : 0)) % V);
  model = new Transformer(tinyLlama(V), 3);
  await train(
    model,
    new Grid({ depth: [1, 2, 3, 4] }, model),
    tokenDataset('periodic', Int32Array.from(stream), 16, V),
    resolveTrainConfig({ steps: 30, batchSize: 8, gAcc: 2, warmupSteps: 2 }),
  );
});

/** Logits of every position at depth d, without any cache: [T][V]. */
function uncachedAll(tokens: readonly number[], d: number): Float32Array[] {
  return tf.tidy(() => {
    const y = model.forward(tf.tensor2d([...tokens], [1, tokens.length], 'int32'), { depth: d }, EVAL);
    const flat = y.dataSync() as Float32Array;
    return Array.from({ length: tokens.length }, (_, t) => flat.slice(t * V, (t + 1) * V));
  });
}

const argmax = (x: ArrayLike<number>) => Array.prototype.indexOf.call(x, Math.max(...Array.from(x)));

/** Top-1 − top-2 logit gap, or the top softmax probability. */
const confidence = (x: Float32Array, measure: 'margin' | 'probability') => {
  const sorted = Array.from(x).sort((a, b) => b - a);
  return measure === 'margin' ? sorted[0] - sorted[1] : Math.max(...softmax(x));
};

test('calibration on text reaches its agreement, recomputed from uncached forwards', () => {
  for (const [agreement, measure] of [
    [0.8, 'probability'],
    [0.95, 'probability'],
    [0.8, 'margin'],
    [0.95, 'margin'],
  ] as const) {
    const c = calibrateEarlyExit(model, stream, {
      agreement,
      source: 'text',
      window: 24,
      windows: 10,
      measure,
    });
    assert.equal(c.measure, measure);
    assert.ok(c.agreement >= agreement, `reported ${c.agreement} < ${agreement}`);
    assert.ok(
      c.exits.length > 0 && c.meanExitDepth < 4,
      `some tokens should leave early: ${JSON.stringify(c)}`,
    );
    // The same windows, scored independently: the first exit above its threshold decides.
    const n = 10;
    const stride = Math.floor((stream.length - 24) / (n - 1));
    let agreeing = 0;
    let positions = 0;
    let depthSum = 0;
    for (let w = 0; w < n; w++) {
      const win = stream.slice(w * stride, w * stride + 24);
      const full = uncachedAll(win, 4);
      const exits = c.exits.map((d) => uncachedAll(win, d));
      for (let t = 0; t < 23; t++) {
        const j = c.exits.findIndex((_, i) => confidence(exits[i][t], measure) > c.thresholds[i]);
        const token = j < 0 ? argmax(full[t]) : argmax(exits[j][t]);
        depthSum += j < 0 ? 4 : c.exits[j];
        agreeing += token === argmax(full[t]) ? 1 : 0;
        positions++;
      }
    }
    assert.equal(c.positions, positions);
    assert.ok(
      Math.abs(agreeing / positions - c.agreement) < 1e-9,
      `${agreeing / positions} vs ${c.agreement}`,
    );
    assert.ok(Math.abs(depthSum / positions - c.meanExitDepth) < 1e-9);
    assert.ok(agreeing / positions >= agreement);
  }
});

test("calibration at agreement 1 on the model's greedy continuations decodes exactly greedily, leaving early", () => {
  const c = calibrateEarlyExit(model, stream, { agreement: 1, window: 32, promptTokens: 4, windows: 8 });
  assert.equal(c.agreement, 1);
  assert.ok(c.exits.length > 0, 'an exit should be worth checking');
  const stride = Math.floor((stream.length - 4) / 7);
  let early = 0;
  for (let w = 0; w < 8; w++) {
    const prompt = stream.slice(w * stride, w * stride + 4);
    const want = generate(model, prompt, { maxNewTokens: 28 }).tokens;
    const got = generate(model, prompt, {
      maxNewTokens: 28,
      earlyExit: { exits: c.exits, thresholds: c.thresholds, measure: c.measure },
    });
    assert.deepEqual(got.tokens, want, `prompt ${w}`);
    early += 28 - (got.exitCounts[4] ?? 0);
  }
  assert.ok(early > 0, 'some tokens should leave before the full depth');
});

test('without a measure, calibration takes the cheaper of the two', () => {
  const o = { agreement: 0.9, source: 'text', window: 24, windows: 10 } as const;
  const both = calibrateEarlyExit(model, stream, o);
  const each = (['margin', 'probability'] as const).map((measure) =>
    calibrateEarlyExit(model, stream, { ...o, measure }),
  );
  const cheaper = each[0].relativeCost <= each[1].relativeCost ? each[0] : each[1];
  assert.equal(both.measure, cheaper.measure);
  assert.equal(both.relativeCost, Math.min(...each.map((c) => c.relativeCost)));
});

test('the threshold search finds the cheapest single exit that keeps the agreement', () => {
  const r = createRng(3);
  const N = 300;
  const conf = Float64Array.from({ length: N }, () => r.next());
  // Confident positions agree more often, as in a real model.
  const agree = Uint8Array.from(conf, (p) => (r.next() < 0.5 + 0.5 * p ? 1 : 0));
  const s: ExitStats = { depths: [2], conf: [conf], agree: [agree], positions: N };
  for (const target of [0.9, 0.97, 0.99]) {
    const got = chooseThresholds(s, 4, target, 0.25);
    // Brute force over every threshold that changes which positions leave.
    let best = evaluateThresholds(s, [Infinity], 4, 0.25).cost;
    for (const t of [0, ...conf].map((v) => Math.max(0, v - 1e-12))) {
      const e = evaluateThresholds(s, [t], 4, 0.25);
      if (e.agreement >= target) best = Math.min(best, e.cost);
    }
    assert.ok(got.agreement >= target);
    // The search picks among 1e-3-rounded quantiles: within one quantile step of the optimum.
    assert.ok(got.cost <= best + (2 * 2) / 200 + 1e-9, `target ${target}: cost ${got.cost}, optimum ${best}`);
  }
});

test('bad calibration requests are refused by name', () => {
  assert.throws(() => calibrateEarlyExit(model, stream, { agreement: 1.5 }), /agreement must be in \(0, 1\]/);
  assert.throws(
    () => calibrateEarlyExit(model, stream, { agreement: 0.9, exits: [4] }),
    /exit 4 must be a depth in 1\.\.3/,
  );
  assert.throws(() => calibrateEarlyExit(model, stream, { agreement: 0.9, exits: [2, 1] }), /must increase/);
  assert.throws(() => calibrateEarlyExit(model, stream.slice(0, 10), { agreement: 0.9 }), /needs at least/);
  assert.throws(
    () => calibrateEarlyExit(model, [1, 2, 9], { agreement: 0.9, window: 2 }),
    /token 9 at 2 is outside/,
  );
});
