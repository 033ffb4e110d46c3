/**
 * Each training strategy's first step, recomputed by hand from the same initial weights: which
 * sub-models it trains and the loss it optimises. The dataset is exactly one batch, so every
 * micro-batch holds the same samples whatever the shuffling.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { Mlp, type MlpConfig } from '../src/models/mlp.js';
import { Grid } from '../src/sorted/grid.js';
import type { SubModel } from '../src/sorted/submodel.js';
import { train, type StepLog } from '../src/train/trainer.js';
import { resolveTrainConfig, type TrainConfig } from '../src/train/config.js';
import { loadMnist } from '../src/data/mnist.js';
import { subset, type ImageDataset } from '../src/data/dataset.js';

const B = 32;
const CONFIG: MlpConfig = { inputs: 784, hidden: [24, 24, 24], classes: 10 };
const GRID = { depth: [1, 2, 3], width: [0.5, 1] };
let data: ImageDataset;
before(async () => {
  await initEngine('wasm');
  data = subset(loadMnist().train, B, 3);
});

async function firstStep(overrides: Partial<TrainConfig>): Promise<{ log: StepLog; grid: Grid }> {
  const model = new Mlp(CONFIG, 4);
  const grid = new Grid(GRID, model);
  const logs: StepLog[] = [];
  const config = resolveTrainConfig({ steps: 1, batchSize: B, gAcc: 4, warmupSteps: 1, ...overrides });
  await train(model, grid, data, config, { onStep: (l) => logs.push(l) });
  model.dispose();
  return { log: logs[0], grid };
}

/** Logits of `sub` on the whole dataset, from the initial weights. */
function logitsOf(sub: SubModel): tf.Tensor2D {
  const model = new Mlp(CONFIG, 4);
  const x = tf.tensor4d(data.images, [B, 28, 28, 1]);
  const out = model.forward(x, sub) as tf.Tensor2D;
  model.dispose();
  return out;
}
const hardLoss = (sub: SubModel) =>
  tf.tidy(
    () =>
      tf.losses
        .softmaxCrossEntropy(tf.oneHot(tf.tensor1d(data.labels, 'int32'), 10), logitsOf(sub))
        .dataSync()[0],
  );
const softLoss = (teacher: SubModel, sub: SubModel) =>
  tf.tidy(() => tf.losses.softmaxCrossEntropy(tf.softmax(logitsOf(teacher)), logitsOf(sub)).dataSync()[0]);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-4, `${what}: trainer's loss ${a}, by hand ${b}`);

test('sorted: gAcc sub-models from the grid, the loss is their mean cross-entropy', async () => {
  const { log, grid } = await firstStep({ strategy: 'sorted' });
  assert.equal(log.subModels.length, 4);
  close(log.loss, mean(log.subModels.map((id) => hardLoss(grid.get(id).sub))), 'sorted');
});

test('individual: the sampler is pinned to one sub-model; every micro-batch trains it', async () => {
  const model = new Mlp(CONFIG, 4);
  const grid = new Grid(GRID, model);
  model.dispose();
  const target = grid.entries[2];
  const weights = grid.entries.map((e) => (e === target ? 1 : 0));
  const { log } = await firstStep({ strategy: 'individual', sampler: { weights } });
  assert.deepEqual(log.subModels, [target.id, target.id, target.id, target.id]);
  close(log.loss, hardLoss(target.sub), 'individual');
});

test('full-only: only the largest sub-model', async () => {
  const { log, grid } = await firstStep({ strategy: 'full-only' });
  assert.deepEqual(log.subModels, Array(4).fill(grid.largest.id));
  close(log.loss, hardLoss(grid.largest.sub), 'full-only');
});

test('sandwich: largest + smallest + random, hard labels for all without distillation', async () => {
  const { log, grid } = await firstStep({ strategy: 'sandwich' });
  assert.equal(log.subModels[0], grid.largest.id);
  assert.equal(log.subModels[1], grid.smallest.id);
  assert.equal(log.subModels.length, 4);
  close(log.loss, mean(log.subModels.map((id) => hardLoss(grid.get(id).sub))), 'sandwich');
});

test("sandwich with in-place distillation: smaller sub-models match the largest's soft targets", async () => {
  const { log, grid } = await firstStep({ strategy: 'sandwich', distill: true });
  const largest = grid.largest.sub;
  const expected = mean(
    log.subModels.map((id) =>
      id === grid.largest.id ? hardLoss(largest) : softLoss(largest, grid.get(id).sub),
    ),
  );
  close(log.loss, expected, 'sandwich + distill');
  // And it is not the hard-label loss: the distillation term is really there.
  const hard = mean(log.subModels.map((id) => hardLoss(grid.get(id).sub)));
  assert.ok(Math.abs(log.loss - hard) > 1e-3, 'distillation changed nothing');
});

test('all-exits: the loss averages every depth exit of the largest sub-model', async () => {
  const { log, grid } = await firstStep({ strategy: 'all-exits', gAcc: 2 });
  assert.deepEqual(log.subModels, [grid.largest.id, grid.largest.id]);
  const perExit = [1, 2, 3].map((depth) => hardLoss({ ...grid.largest.sub, depth }));
  close(log.loss, mean(perExit), 'all-exits');
});

test('all-exits in one pass: forwardExits equals a forward per depth (MLP, GPT- and LLaMA-style LMs)', async () => {
  const { Transformer } = await import('../src/models/transformer.js');
  const mlp = new Mlp(CONFIG, 4);
  const x = tf.tensor4d(data.images.subarray(0, 4 * 784), [4, 28, 28, 1]);
  const sub = { width: 0.5 };
  const exits = mlp.forwardExits(x, sub, [1, 3]);
  assert.equal(exits.length, 2);
  for (const [i, d] of [1, 3].entries()) {
    const ref = mlp.forward(x, { ...sub, depth: d });
    assert.ok(tf.max(tf.abs(tf.sub(exits[i], ref))).dataSync()[0] < 1e-6, `mlp depth ${d}`);
  }
  for (const arch of ['gpt', 'llama'] as const) {
    const lm = new Transformer(
      { task: 'lm', vocab: 50, dim: 32, heads: 4, headDim: 8, ffn: 64, layers: 4, maxLen: 16, arch },
      3,
    );
    const ids = tf.tensor2d(
      Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 7) % 50),
      [2, 16],
      'int32',
    );
    const ctx = { mode: 'train' as const, key: 'exits' };
    const outs = lm.forwardExits(ids, { heads: 2 }, [1, 2, 4], ctx);
    for (const [i, d] of [1, 2, 4].entries()) {
      const ref = lm.forward(ids, { heads: 2, depth: d }, ctx);
      assert.ok(tf.max(tf.abs(tf.sub(outs[i], ref))).dataSync()[0] < 1e-5, `${arch} depth ${d}`);
    }
    assert.throws(() => lm.forwardExits(ids, {}, [2, 1], ctx), /must ascend/);
  }
});
