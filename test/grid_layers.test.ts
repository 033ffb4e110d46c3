/** Per-layer widths in a grid (Mix'n'Match): sampled, trained, picked and extracted like the others. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { Mlp } from '../src/models/mlp.js';
import { Grid } from '../src/sorted/grid.js';
import { train, type StepLog } from '../src/train/trainer.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { extractSubModel } from '../src/models/extract.js';
import { candidatesFrom, pickSubModel } from '../src/infer/pick.js';
import { loadMnist } from '../src/data/mnist.js';
import { subset } from '../src/data/dataset.js';
import { assertClose } from './helpers.js';

before(async () => {
  await initEngine('wasm');
});

const config = { inputs: 784, hidden: [24, 24, 24], classes: 10 };
const spec = { depth: [2, 3], layers: { 'layers.0': [8, 24], 'layers.1': [6, 24] } };

test('grid: per-layer choices are crossed with the dimensions, cheapest first', () => {
  const grid = new Grid(spec, new Mlp(config, 1));
  assert.equal(grid.size, 2 * 2 * 2);
  assert.ok(grid.entries.some((e) => e.id === 'depth=2,layers.0=8,layers.1=24'));
  for (let i = 1; i < grid.size; i++) assert.ok(grid.entries[i - 1].cost.flops <= grid.entries[i].cost.flops);
  assert.equal(grid.smallest.id, 'depth=2,layers.0=8,layers.1=6');
  assert.equal(grid.largest.id, 'depth=3,layers.0=24,layers.1=24');
  // A layer-8 hidden layer has 784·8 + 8 weights into it: the cost sees the per-layer width.
  const narrow = grid.get('depth=2,layers.0=8,layers.1=24').cost.params;
  const wide = grid.get('depth=2,layers.0=24,layers.1=24').cost.params;
  assert.equal(wide - narrow, 16 * 784 + 16 + 16 * 24);
  assert.throws(
    () => new Grid({ layers: { 'layers.9': [4] } }, new Mlp(config, 1)),
    /unknown layer 'layers.9'/,
  );
  assert.throws(() => new Grid({ layers: { 'layers.0': [] } }, new Mlp(config, 1)), /layer 'layers.0' needs/);
  assert.throws(() => new Grid({ layers: { 'layers.0': [8, 99] } }, new Mlp(config, 1)), /99/);
});

test('per-layer sub-models are drawn in training, picked by budget and extracted equal', async () => {
  const model = new Mlp(config, 2);
  const grid = new Grid(spec, model);
  const logs: StepLog[] = [];
  const data = subset(loadMnist().train, 64, 1);
  await train(model, grid, data, resolveTrainConfig({ steps: 6, batchSize: 16, gAcc: 4, warmupSteps: 1 }), {
    onStep: (l) => logs.push(l),
  });
  const drawn = new Set(logs.flatMap((l) => l.subModels));
  assert.ok(drawn.size >= 4, `only ${drawn.size} distinct sub-models drawn`);
  for (const id of drawn) assert.ok(grid.get(id));
  const budget = grid.get('depth=3,layers.0=8,layers.1=24').cost.flops;
  const best = pickSubModel(candidatesFrom(grid.entries), { maxFlops: budget });
  assert.ok(best && best.flops <= budget);
  const entry = grid.get('depth=3,layers.0=8,layers.1=6');
  const small = extractSubModel(model, entry.sub, (c) => new Mlp(c, 9));
  const x = tf.tensor4d(data.images.subarray(0, 4 * 784), [4, 28, 28, 1]);
  assertClose(
    small.forward(x, {}, { mode: 'eval', key: 'full' }),
    model.forward(x, entry.sub),
    1e-5,
    'extracted per-layer sub-model',
  );
  assert.equal(small.parameterCount(), entry.cost.params);
});
