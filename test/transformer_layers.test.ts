/**
 * Per-block widths in a transformer (Mix'n'Match, MatFormer / Gemma 3n): `blocks.i.ffn` (FFN hidden
 * units) and `blocks.i.attn` (heads) in a grid are costed block by block, sampled in training, picked,
 * extracted into a standalone model with per-block widths that equals the slice, and decoded.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { Transformer, type TransformerConfig } from '../src/models/transformer.js';
import { MoETransformer, MOE_TRANSFORMER_DEFAULTS } from '../src/models/moe_transformer.js';
import { buildModel, specOf } from '../src/models/index.js';
import { Grid } from '../src/sorted/grid.js';
import { FULL, parseSubModel, type SubModel } from '../src/sorted/submodel.js';
import { extractSubModel } from '../src/models/extract.js';
import { candidatesFrom, pickSubModel } from '../src/infer/pick.js';
import { KvCache } from '../src/infer/kv_cache.js';
import { generate } from '../src/infer/generate.js';
import { train, type StepLog } from '../src/train/trainer.js';
import { resolveTrainConfig } from '../src/train/config.js';
import type { SequenceDataset } from '../src/data/sequences.js';
import { assertClose } from './helpers.js';

before(async () => {
  await initEngine('wasm');
});

const EVAL = { mode: 'eval', key: 'full' } as const;
const lm: TransformerConfig = {
  task: 'lm',
  vocab: 24,
  dim: 16,
  heads: 4,
  headDim: 4,
  ffn: 32,
  layers: 3,
  maxLen: 12,
};
const cls: TransformerConfig = { ...lm, task: 'classify', maxLen: 10, classes: 3, padId: 0 };
/** Block 0 with a quarter of its FFN, block 1 with one head, block 2 with 20 of 32 FFN units. */
const mix: SubModel = { layers: { 'blocks.0.ffn': 8, 'blocks.1.attn': 1, 'blocks.2.ffn': 20 } };

const ids = (n: number, T: number, seed: number) =>
  tf.randomUniform([n, T], 1, 24, 'int32', seed) as tf.Tensor2D;

test('cost: a narrower block costs exactly its own FFN / attention units less; uniform and per-block agree', () => {
  const m = new Transformer(lm, 1);
  const T = lm.maxLen;
  const e = lm.dim;
  const full = m.cost(FULL);
  // blocks.0.ffn 32 → 8: 24 units fewer in up (weights + bias) and down (weights), FLOPs 2·2·e·24 per token.
  const ffn = m.cost({ layers: { 'blocks.0.ffn': 8 } });
  assert.equal(full.params - ffn.params, 24 * (e + 1) + 24 * e);
  assert.equal(full.flops - ffn.flops, T * 4 * e * 24);
  // blocks.1.attn 4 → 2 heads: 8 inner units fewer in q, k, v (weights + bias) and o (weights),
  // and in the T-long scores and weighted sum.
  const attn = m.cost({ layers: { 'blocks.1.attn': 2 } });
  assert.equal(full.params - attn.params, 3 * (e * 8 + 8) + 8 * e);
  assert.equal(full.flops - attn.flops, T * (4 * 2 * e * 8 + 4 * T * 8));
  // The uniform budget is the per-block one applied to every block.
  const every = { 'blocks.0.ffn': 8, 'blocks.1.ffn': 8, 'blocks.2.ffn': 8 };
  assert.deepEqual(m.cost({ ffn: 0.25 }), m.cost({ layers: every }));
  assert.deepEqual(
    m.cost({ heads: 1 }),
    m.cost({ layers: { 'blocks.0.attn': 1, 'blocks.1.attn': 1, 'blocks.2.attn': 1 } }),
  );
  // A per-block override wins over the uniform budget for its block only.
  assert.deepEqual(m.cost({ ffn: 0.25, layers: { 'blocks.1.ffn': 32, 'blocks.2.ffn': 32 } }), ffn);
  m.dispose();
});

test('grid: per-block choices are crossed in, cheapest first; bad names and widths are named', () => {
  const m = new Transformer(lm, 1);
  const grid = new Grid({ depth: [2, 3], layers: { 'blocks.0.ffn': [8, 32], 'blocks.1.attn': [2, 4] } }, m);
  assert.equal(grid.size, 8);
  for (let i = 1; i < grid.size; i++) assert.ok(grid.entries[i - 1].cost.flops <= grid.entries[i].cost.flops);
  assert.equal(grid.smallest.id, 'depth=2,blocks.0.ffn=8,blocks.1.attn=2');
  assert.equal(grid.largest.id, 'depth=3,blocks.0.ffn=32,blocks.1.attn=4');
  assert.deepEqual(parseSubModel('depth=2,blocks.0.ffn=8,blocks.1.attn=2'), grid.smallest.sub);
  assert.throws(
    () => new Grid({ layers: { 'blocks.3.ffn': [8] } }, m),
    /unknown layer 'blocks\.3\.ffn'; elastic layers are: blocks\.0\.attn, blocks\.0\.ffn, .*blocks\.2\.ffn/,
  );
  assert.throws(
    () => new Grid({ layers: { 'blocks.0.ffn': [8, 64] } }, m),
    /width 64 > layer size 32 in 'blocks\.0\.ffn'/,
  );
  assert.throws(
    () => new Grid({ layers: { 'blocks.1.attn': [5] } }, m),
    /heads 5 > layer size 4 in 'blocks\.1\.attn'/,
  );
  assert.throws(
    () => new Grid({ layers: { 'blocks.0.ffn': [0.5] } }, m),
    /layer 'blocks\.0\.ffn' width 0\.5 must be a positive integer/,
  );
  assert.throws(
    () => new Grid({ layers: { 'blocks.0.ffn': [] } }, m),
    /layer 'blocks\.0\.ffn' needs a non-empty list/,
  );
  assert.throws(() => new Transformer({ ...lm, ffn: [8, 8] }), /ffn lists 2 values for 3 layers/);
  assert.throws(
    () => new Transformer({ ...lm, heads: [4, 0, 4] }),
    /heads 0 of block 1 must be a positive integer/,
  );
  // MoE experts have one width: a per-block FFN budget is refused, per-block heads are fine.
  const moe = new MoETransformer(
    { ...MOE_TRANSFORMER_DEFAULTS, dim: 16, ffn: 16, experts: 2, ffnMode: 'moe' },
    1,
  );
  assert.throws(
    () => new Grid({ layers: { 'blocks.0.ffn': [8, 16] } }, moe),
    /experts have a fixed width, so 'blocks\.0\.ffn'/,
  );
  assert.equal(new Grid({ layers: { 'blocks.1.attn': [1, 4] } }, moe).size, 2);
  moe.dispose();
  m.dispose();
});

test('a non-uniform sub-model equals its extracted standalone model (classifier, GPT LM, LLaMA LM)', () => {
  for (const config of [cls, lm, { ...lm, arch: 'llama' as const }]) {
    const shared = new Transformer(config, 3);
    for (const sub of [mix, { depth: 2, ffn: 0.5, layers: { 'blocks.0.attn': 2 } }]) {
      const small = extractSubModel(shared, sub, (c) => buildModel(specOf(shared, c)) as Transformer);
      const what = `${config.task} ${config.arch ?? 'gpt'} ${JSON.stringify(sub)}`;
      if (sub === mix) {
        assert.deepEqual(small.config.ffn, [8, 32, 20], what);
        assert.deepEqual(small.config.heads, [4, 1, 4], what);
      } else {
        assert.equal(small.config.ffn, 16, `${what}: equal widths stay one number`);
        assert.deepEqual(small.config.heads, [2, 4], what);
      }
      const x = ids(3, config.maxLen, 5);
      assertClose(small.forward(x, FULL, EVAL), shared.forward(x, sub, EVAL), 1e-5, what);
      assert.equal(small.parameterCount(), shared.cost(sub).params, `${what}: params`);
      assert.deepEqual(small.cost(FULL), shared.cost(sub), `${what}: cost`);
      x.dispose();
      small.dispose();
    }
    shared.dispose();
  }
});

test('KV-cached decoding of a non-uniform sub-model: the shared model at those widths and the extracted model agree', () => {
  const shared = new Transformer(lm, 4);
  const seq = [3, 7, 1, 9, 9, 2, 5, 11];
  // Cached, step by step, on the shared model at the sub-model's widths = the uncached forward.
  const cache = new KvCache(shared, mix);
  cache.append(seq.slice(0, 4));
  for (let t = 4; t <= seq.length; t++) {
    const got = tf.tidy(() => shared.lmLogits(cache.advance(lm.layers)));
    const want = tf.tidy(() => {
      const logits = shared.forward(tf.tensor2d(seq.slice(0, t), [1, t], 'int32'), mix, EVAL);
      return tf.reshape(tf.slice(logits, [0, t - 1, 0], [1, 1, -1]), [1, lm.vocab]);
    });
    assertClose(got, want, 1e-4, `position ${t}`);
    tf.dispose([got, want]);
    if (t < seq.length) cache.append([seq[t]]);
  }
  cache.dispose();
  // The extracted model decodes greedily what the shared model's sub-model predicts.
  const small = extractSubModel(shared, mix, (c) => new Transformer(c, 9)) as Transformer;
  const out = generate(small, seq.slice(0, 3), { maxNewTokens: 5, temperature: 0 });
  const tokens = seq.slice(0, 3);
  for (let i = 0; i < 5; i++) {
    const next = tf.tidy(() => {
      const logits = shared.forward(tf.tensor2d(tokens, [1, tokens.length], 'int32'), mix, EVAL);
      return tf.argMax(tf.slice(logits, [0, tokens.length - 1, 0], [1, 1, -1]), -1).dataSync()[0];
    });
    tokens.push(next);
  }
  assert.deepEqual(out.tokens, tokens.slice(3));
  small.dispose();
  shared.dispose();
});

test('training draws per-block sub-models; pick finds one under a budget', async () => {
  const n = 16;
  const data: SequenceDataset = {
    name: 'toy',
    sequences: Int32Array.from({ length: n * 10 }, (_, j) => 1 + ((j * 7) % 23)),
    labels: Int32Array.from({ length: n }, (_, i) => i % 3),
    n,
    seqLen: 10,
    vocab: 24,
    numClasses: 3,
  };
  const model = new Transformer(cls, 2);
  const grid = new Grid(
    { layers: { 'blocks.0.ffn': [8, 32], 'blocks.2.ffn': [16, 32], 'blocks.1.attn': [2, 4] } },
    model,
  );
  const logs: StepLog[] = [];
  await train(model, grid, data, resolveTrainConfig({ steps: 4, batchSize: 8, gAcc: 4, warmupSteps: 1 }), {
    onStep: (l) => logs.push(l),
  });
  const drawn = new Set(logs.flatMap((l) => l.subModels));
  assert.ok(drawn.size >= 4, `only ${drawn.size} distinct sub-models drawn`);
  for (const id of drawn) assert.ok(grid.get(id));
  const budget = grid.get('blocks.0.ffn=8,blocks.1.attn=4,blocks.2.ffn=16').cost.flops;
  const best = pickSubModel(candidatesFrom(grid.entries), { maxFlops: budget });
  assert.ok(best && best.flops <= budget && best.flops > grid.smallest.cost.flops);
  model.dispose();
});

test('MoE transformer: depth × per-block heads sub-models of a PAD-MoE model extract equal to their slice', () => {
  const model = new MoETransformer(
    {
      ...MOE_TRANSFORMER_DEFAULTS,
      vocab: 24,
      dim: 16,
      heads: 4,
      ffn: 12,
      layers: 3,
      maxLen: 8,
      experts: 3,
      ffnMode: 'pad-moe',
    },
    5,
  );
  // Masks that are not all ones, so that a lost buffer would show.
  for (const [name, b] of model.namedBuffers())
    b.assign(tf.cast(tf.greater(tf.randomUniform(b.shape, 0, 1, 'float32', name.length), 0.5), 'float32'));
  const grid = new Grid({ depth: [2, 3], heads: [2, 4], layers: { 'blocks.1.attn': [1, 4] } }, model);
  const entry = grid.get('depth=2,heads=2,blocks.1.attn=1');
  const small = extractSubModel(model, entry.sub, (c) => buildModel(specOf(model, c)) as MoETransformer);
  assert.equal(small.family, 'moe-transformer');
  assert.deepEqual((small as MoETransformer).config.heads, [2, 1]);
  const x = ids(2, 8, 3);
  assertClose(
    small.forward(x, FULL, EVAL),
    model.forward(x, entry.sub, EVAL),
    1e-5,
    'extracted MoE sub-model',
  );
  // Deployed cost (PAD-MoE: with the current masks), block by block.
  assert.deepEqual(small.cost(FULL), entry.cost);
  x.dispose();
  small.dispose();
  model.dispose();
});
