/**
 * Sorted LM decoding on a KV cache: cached logits equal a full forward at every exit, speculative
 * greedy equals greedy, speculative sampling draws from the full model's distribution, early exit
 * degenerates correctly at its extremes, and bad requests are refused clearly.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { Transformer, type TransformerConfig } from '../src/models/transformer.js';
import { tinyLlama } from './lm_helpers.js';
import type { RMSNorm } from '../src/nn/norm.js';
import { generate, generateStream } from '../src/infer/generate.js';
import { KvCache } from '../src/infer/kv_cache.js';
import { nextTokenProbs, speculativeAccept, softmax, topIds } from '../src/infer/sampling.js';
import { createRng } from '../src/data/random.js';
import { train } from '../src/train/trainer.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { Grid } from '../src/sorted/grid.js';
import { tokenDataset } from '../src/data/tokens.js';

const V = 6;
const EVAL = { mode: 'eval', key: 't' } as const;
let model: Transformer;

/** A little training on a noisy periodic sequence: drafts are sometimes right, sometimes wrong. */
async function trained(config: TransformerConfig): Promise<Transformer> {
  const m = new Transformer(config, 3);
  const r = createRng(5);
  const tokens = Int32Array.from(
    { length: 3000 },
    (_, i) => (((i * 7) % V) + (r.next() < 0.3 ? r.int(V) : 0)) % V,
  );
  await train(
    m,
    new Grid({ depth: Array.from({ length: config.layers }, (_, i) => i + 1) }, m),
    tokenDataset('periodic', tokens, 16, V),
    resolveTrainConfig({ steps: 30, batchSize: 8, gAcc: 2, warmupSteps: 2 }),
  );
  return m;
}

const llama = tinyLlama(V);

before(async () => {
  await initEngine('wasm');
  model = await trained(llama);
});

/** Full-forward logits of the last position at depth d, without any cache. */
function uncached(m: Transformer, tokens: number[], d: number): Float32Array {
  return tf.tidy(() => {
    const logits = m.forward(tf.tensor2d(tokens, [1, tokens.length], 'int32'), { depth: d }, EVAL);
    return tf.slice(logits, [0, tokens.length - 1, 0], [1, 1, -1]).dataSync() as Float32Array;
  });
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

test('KV-cached logits equal uncached logits at every exit (llama and gpt), step by step and lazily filled', async () => {
  const gpt = new Transformer({ ...llama, arch: 'gpt' }, 4);
  for (const m of [model, gpt]) {
    const seq = [1, 4, 2, 2, 5, 0, 3, 1, 4, 4, 2, 5];
    for (let d = 1; d <= m.config.layers; d++) {
      const cache = new KvCache(m);
      cache.append(seq.slice(0, 5)); // chunked prefill
      for (let t = 5; t <= seq.length; t++) {
        const got = tf.tidy(() => m.lmLogits(cache.advance(d)).dataSync() as Float32Array);
        const diff = maxDiff(got, uncached(m, seq.slice(0, t), d));
        assert.ok(diff < 1e-4, `${m.config.arch} depth ${d} position ${t}: |diff| ${diff}`);
        if (t < seq.length) cache.append([seq[t]]);
      }
      cache.dispose();
    }
    // Positions stopped at mixed depths (early exits, drafts): the lazy fill makes the cache exact.
    const cache = new KvCache(m);
    const depths = [1, 3, 1, 2, 4, 1, 1, 2, 3, 1, 1];
    cache.append([seq[0]]);
    for (let t = 0; t < depths.length; t++) {
      cache.advance(depths[t]).dispose();
      cache.append([seq[t + 1]]);
    }
    const got = tf.tidy(() => m.lmLogits(cache.advance(m.config.layers)).dataSync() as Float32Array);
    const diff = maxDiff(got, uncached(m, seq.slice(0, depths.length + 1), m.config.layers));
    assert.ok(diff < 1e-4, `${m.config.arch} lazily filled: |diff| ${diff}`);
    cache.dispose();
    if (m === gpt) gpt.dispose();
  }
});

test('a layer that fails mid-pass leaves the cache whole: the next pass is exact and nothing leaks', () => {
  const seq = [1, 4, 2, 2, 5, 0, 3, 1];
  const L = model.config.layers;
  const cache = new KvCache(model);
  cache.append(seq.slice(0, 3));
  cache.advance(1).dispose(); // positions 0–2 through layer 1 only
  cache.append(seq.slice(3));
  const before = tf.memory().numTensors;
  const step = model.blockStep.bind(model);
  model.blockStep = (l, ...rest) => {
    if (l === 2) throw new Error('out of memory (simulated)');
    return step(l, ...rest);
  };
  try {
    assert.throws(() => cache.advance(L, 3), /out of memory \(simulated\)/);
  } finally {
    model.blockStep = step;
  }
  // The positions keep the depth they reached (layers 1–2 of the pass ran): a row each, as before, plus
  // layer 2's new keys and values.
  assert.equal(tf.memory().numTensors, before + 2, 'tensors after the failed pass');
  const got = tf.tidy(() => model.lmLogits(cache.advance(L)).dataSync() as Float32Array);
  const diff = maxDiff(got, uncached(model, seq, L));
  assert.ok(diff < 1e-4, `after the failure: |diff| ${diff}`);
  cache.dispose();
});

test('speculative greedy output is identical to plain greedy for many prompts, draft depths and k', () => {
  const r = createRng(11);
  for (let i = 0; i < 12; i++) {
    const prompt = Array.from({ length: 1 + r.int(6) }, () => r.int(V));
    const want = generate(model, prompt, { maxNewTokens: 24, temperature: 0 }).tokens;
    for (const draftDepth of [1, 2, 3]) {
      for (const [k, adaptive] of [
        [1, false],
        [3, true],
        [5, false],
      ] as const) {
        const got = generate(model, prompt, {
          maxNewTokens: 24,
          temperature: 0,
          speculative: { draftDepth, k, adaptive },
        });
        assert.deepEqual(got.tokens, want, `prompt [${prompt}] draft ${draftDepth} k ${k}`);
        assert.ok(got.accepted <= got.proposed && got.fullPasses <= 24);
      }
    }
  }
});

test('early exit: thresholds that never fire give greedy; thresholds of 0 at exit d give greedy of depth d', () => {
  for (const prompt of [[2], [1, 3, 5], [0, 0, 4, 1]]) {
    const full = generate(model, prompt, { maxNewTokens: 16, temperature: 0 });
    for (const th of [1, 1.1]) {
      const never = generate(model, prompt, {
        maxNewTokens: 16,
        temperature: 0,
        earlyExit: { exits: [1, 2], thresholds: [th, th] },
      });
      assert.deepEqual(never.tokens, full.tokens);
      assert.equal(never.meanExitDepth, 4);
    }
    for (const d of [1, 2, 3]) {
      const always = generate(model, prompt, {
        maxNewTokens: 16,
        temperature: 0,
        earlyExit: { exits: [d], thresholds: [0] },
      });
      assert.deepEqual(
        always.tokens,
        generate(model, prompt, { maxNewTokens: 16, temperature: 0, exit: d }).tokens,
      );
      assert.equal(always.meanExitDepth, d);
    }
  }
});

test('early exit with threshold 1 is greedy even where an exit is certain (top probability rounds to 1)', () => {
  // The final norm's gain ×10⁴ scales every exit's logits (the blocks are untouched): gaps of
  // tens, so the top probability is exactly 1 in float64.
  const sure = new Transformer(llama, 9);
  const gain = (sure.lnFinal as RMSNorm).gamma;
  gain.assign(tf.mul(gain, 1e4));
  const prompt = [1, 3, 5];
  const conf = tf.tidy(() =>
    Math.max(
      ...softmax(
        sure
          .lmLogits(sure.embed(tf.tensor2d([prompt], [1, 3], 'int32'), {}))
          .dataSync()
          .slice(-V),
      ),
    ),
  );
  assert.equal(conf, 1, 'the fixture should be certain');
  const full = generate(sure, prompt, { maxNewTokens: 16 });
  const shallow = generate(sure, prompt, { maxNewTokens: 16, exit: 1 });
  assert.notDeepEqual(
    shallow.tokens,
    full.tokens,
    'the fixture needs an exit that disagrees with the full model',
  );
  const never = generate(sure, prompt, {
    maxNewTokens: 16,
    earlyExit: { exits: [1, 2, 3], thresholds: [1, 1, 1] },
  });
  assert.deepEqual(never.tokens, full.tokens);
  assert.deepEqual(never.exitCounts, { 4: 16 });
  sure.dispose();
});

test('early exit at mixed depths keeps the cache exact: its full-depth tokens match a fresh forward', () => {
  // Thresholds at the median confidence of each exit along a greedy run, so that exits vary.
  const g = generate(model, [1, 2], { maxNewTokens: 30, temperature: 0 }).tokens;
  const TH = [1, 2, 3].map((d) => {
    const c = g.map((_, i) => Math.max(...softmax(uncached(model, [1, 2, ...g.slice(0, i)], d)))).sort();
    return c[c.length >> 1];
  });
  const out = generate(model, [1, 2], {
    maxNewTokens: 30,
    temperature: 0,
    earlyExit: { exits: [1, 2, 3], thresholds: TH },
  });
  const depths = Object.keys(out.exitCounts).map(Number);
  assert.ok(depths.length >= 2, `exits should vary, got ${JSON.stringify(out.exitCounts)}`);
  // Replaying without any cache: each token is the argmax at the first exit confident enough.
  const seq = [1, 2];
  const again = generate(model, [1, 2], {
    maxNewTokens: 30,
    temperature: 0,
    earlyExit: { exits: [1, 2, 3], thresholds: TH },
  });
  assert.deepEqual(again.tokens, out.tokens, 'deterministic');
  let checked = 0;
  for (const t of out.tokens) {
    const full = uncached(model, seq, 4);
    const conf = [1, 2, 3].map((d) => {
      const p = softmax(uncached(model, seq, d));
      return Math.max(...p);
    });
    const exitAt = TH.findIndex((th, j) => conf[j] > th);
    const expect =
      exitAt < 0
        ? full.indexOf(Math.max(...full))
        : (() => {
            const l = uncached(model, seq, exitAt + 1);
            return l.indexOf(Math.max(...l));
          })();
    assert.equal(t, expect, `token ${seq.length}`);
    checked++;
    seq.push(t);
  }
  assert.equal(checked, 30);
});

test('speculative acceptance rule: the accepted-or-replaced token is distributed as p (chi-square)', () => {
  const p = [0.5, 0.2, 0.15, 0.1, 0.05, 0];
  const q = [0.1, 0.1, 0.3, 0.2, 0.1, 0.2];
  const rng = createRng(7);
  const N = 60000;
  const hist = new Array<number>(p.length).fill(0);
  for (let i = 0; i < N; i++) {
    let u = rng.next();
    let x = 0;
    while (x < q.length - 1 && u >= q[x]) u -= q[x++];
    hist[speculativeAccept(x, p, q, rng).token]++;
  }
  assert.equal(hist[5], 0, 'a token with p = 0 was produced');
  const chi = p.reduce((s, pi, i) => (pi > 0 ? s + (hist[i] - N * pi) ** 2 / (N * pi) : s), 0);
  assert.ok(chi < 18.47, `chi-square ${chi.toFixed(2)} ≥ 18.47 (df 4, p = 0.001): ${hist}`);
});

test('speculative sampling end to end: two-token sequences follow the full model (chi-square, fixed seed)', () => {
  const prompt = [3, 1];
  const o = { temperature: 1, topK: 4 };
  // Exact distribution of (t1, t2) under the full model with the same top-k filter.
  const p1 = nextTokenProbs(uncached(model, prompt, 4), o);
  const exact = new Float64Array(V * V);
  for (let a = 0; a < V; a++) {
    if (p1[a] === 0) continue;
    const p2 = nextTokenProbs(uncached(model, [...prompt, a], 4), o);
    for (let b = 0; b < V; b++) exact[a * V + b] = p1[a] * p2[b];
  }
  // k 1: the second token is the bonus after an accepted draft; k 2: both drafted.
  const N = 1200;
  for (const k of [1, 2]) {
    const hist = new Float64Array(V * V);
    let accepted = 0;
    let proposed = 0;
    for (let s = 0; s < N; s++) {
      const r = generate(model, prompt, {
        ...o,
        maxNewTokens: 2,
        seed: s,
        speculative: { draftDepth: 1, k, adaptive: false },
      });
      hist[r.tokens[0] * V + r.tokens[1]]++;
      accepted += r.accepted;
      proposed += r.proposed;
    }
    assert.ok(
      accepted > 0 && accepted < proposed,
      `the draft should be sometimes rejected: ${accepted}/${proposed}`,
    );
    chiSquare(hist, exact, N, `k ${k}`);
  }
});

function chiSquare(hist: Float64Array, exact: Float64Array, N: number, what: string): void {
  // Pool cells with expected count < 5 into one (the usual chi-square condition).
  let chi = 0;
  let df = -1;
  let poolE = 0;
  let poolO = 0;
  for (let i = 0; i < exact.length; i++) {
    const e = N * exact[i];
    if (e === 0) assert.equal(hist[i], 0, `cell ${i} has probability 0 but was drawn`);
    else if (e < 5) {
      poolE += e;
      poolO += hist[i];
    } else {
      chi += (hist[i] - e) ** 2 / e;
      df++;
    }
  }
  if (poolE > 0) {
    chi += (poolO - poolE) ** 2 / poolE;
    df++;
  }
  // Critical value at p = 0.001 (Wilson–Hilferty approximation).
  const z = 3.09;
  const crit = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
  assert.ok(chi < crit, `${what}: chi-square ${chi.toFixed(1)} ≥ ${crit.toFixed(1)} (df ${df})`);
}

test('sampling is seeded, streams the same tokens, and stops at a stop token', async () => {
  const o = { maxNewTokens: 20, temperature: 0.9, topP: 0.9, seed: 42 };
  const a = generate(model, [1], o).tokens;
  assert.deepEqual(generate(model, [1], o).tokens, a);
  assert.notDeepEqual(generate(model, [1], { ...o, seed: 43 }).tokens, a);
  const streamed: number[] = [];
  const it = generateStream(model, [1], o);
  for await (const t of it) streamed.push(t);
  assert.deepEqual(streamed, a);
  const seen: number[] = [];
  const stopAt = a[3];
  const s = generate(model, [1], { ...o, stopTokens: [stopAt], onToken: (t) => seen.push(t) });
  assert.equal(s.stoppedBy, 'stop-token');
  assert.equal(s.tokens[s.tokens.length - 1], stopAt);
  assert.deepEqual(seen, s.tokens);
});

test('no decoding mode leaves tensors behind', () => {
  const modes = [
    {},
    { temperature: 1, topP: 0.9 },
    { earlyExit: { exits: [1, 2], thresholds: [0.3, 0.3] } },
    { speculative: { draftDepth: 1 } },
    { temperature: 1, speculative: { draftDepth: 2, k: 3 } },
  ];
  for (const o of modes) {
    generate(model, [1, 2], { maxNewTokens: 4, temperature: 0, ...o }); // rotary tables, masks
    const before = tf.memory().numTensors;
    generate(model, [1, 2, 3], { maxNewTokens: 12, temperature: 0, ...o });
    assert.equal(tf.memory().numTensors, before, JSON.stringify(o));
  }
});

test('bad decoding requests are refused with what was wrong', () => {
  const g = (p: number[], o: object) => () => generate(model, p, { maxNewTokens: 4, temperature: 0, ...o });
  assert.throws(g([], {}), /prompt is empty/);
  assert.throws(g([1, 99], {}), /token 99 at position 1 is outside the vocabulary 0\.\.5/);
  assert.throws(g([1], { maxNewTokens: 48 }), /exceed the context length 48/);
  assert.throws(g([1], { maxNewTokens: 0 }), /maxNewTokens: must be greater than or equal to 1, got 0/);
  assert.throws(g([1], { temperature: -1 }), /temperature: must be greater than or equal to 0, got -1/);
  assert.throws(g([1], { topP: 0 }), /topP: must be greater than 0, got 0/);
  assert.throws(g([1], { topK: 99 }), /top-k 99 exceeds the vocabulary/);
  assert.throws(g([1], { exit: 5 }), /exit 5 must be a depth in 1\.\.4/);
  assert.throws(g([1], { speculative: { draftDepth: 4 } }), /draft depth 4 must be below the full depth 4/);
  assert.throws(g([1], { earlyExit: { exits: [2, 1], thresholds: [0.5, 0.5] } }), /must increase/);
  assert.throws(g([1], { earlyExit: { exits: [1], thresholds: [] } }), /need 1 thresholds/);
  assert.throws(g([1], { exit: 2, speculative: { draftDepth: 1 } }), /choose one of/);
});

test('top-k selection equals the first k of the full sort (ties by id), and top-k/top-p filters keep their sets', () => {
  let state = 7;
  const rand = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  for (let trial = 0; trial < 50; trial++) {
    const V = 1 + Math.floor(rand() * 300);
    // Few distinct values: many ties.
    const p = Float64Array.from({ length: V }, () => Math.floor(rand() * 8) / 8);
    const sorted = Array.from(p.keys()).sort((a, b) => p[b] - p[a] || a - b);
    for (const k of [1, 2, 5, Math.max(1, V - 1)].filter((x) => x <= V))
      assert.deepEqual(topIds(p, k), sorted.slice(0, k), `V ${V}, k ${k}`);
  }
  // A vocabulary's worth: candidates gather past the selection's buffer (4k) several times over; ascending
  // values make every id a new best; −∞ and NaN (read as −∞) fill in by id when fewer than k are finite.
  for (const [V, make] of [
    [2048, () => 8 * rand() - 4],
    [2048, () => Math.floor(rand() * 40)],
    [1000, (i: number) => i / 7],
    [500, (i: number) => (i % 3 === 0 ? -Infinity : i % 5 === 0 ? NaN : rand())],
  ] as const) {
    const p = Float32Array.from({ length: V }, (_, i) => make(i));
    const key = (i: number) => (Number.isNaN(p[i]) ? -Infinity : p[i]);
    const sorted = Array.from(p.keys()).sort((a, b) => key(b) - key(a) || a - b);
    for (const k of [1, 16, 50, 64, 200, 400].filter((x) => x <= V))
      assert.deepEqual(topIds(p, k), sorted.slice(0, k), `V ${V}, k ${k}`);
  }
  // The filtered distribution: the k most likely ids (ties by id), renormalised, then the nucleus.
  const logits = Float32Array.from([2, 5, 5, 1, 5, 3, 0, 4]);
  const q = nextTokenProbs(logits, { temperature: 1, topK: 3 });
  assert.deepEqual(
    [...q.keys()].filter((i) => q[i] > 0),
    [1, 2, 4],
  );
  // Top-k alone takes a shortcut (exponentials of the k kept logits only): the same distribution as the softmax
  // over the whole vocabulary restricted to its k largest, renormalised.
  for (const [T, k] of [
    [1, 3],
    [0.7, 50],
    [1.5, 299],
  ]) {
    const z = Float32Array.from({ length: 300 }, () => 8 * rand() - 4);
    const full = softmax(z, T);
    const kept = topIds(full, k);
    const mass = kept.reduce((a, i) => a + full[i], 0);
    const want = new Float64Array(300);
    for (const i of kept) want[i] = full[i] / mass;
    const got = nextTokenProbs(z, { temperature: T, topK: k });
    got.forEach((x, i) =>
      assert.ok(Math.abs(x - want[i]) < 1e-12, `T ${T}, k ${k}: q[${i}] ${x} ≠ ${want[i]}`),
    );
  }
  const q2 = nextTokenProbs(logits, { temperature: 1, topK: 5, topP: 0.5 });
  assert.deepEqual(
    [...q2.keys()].filter((i) => q2[i] > 0),
    [1, 2],
  );
});
