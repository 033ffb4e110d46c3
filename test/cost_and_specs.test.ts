/** Analytic costs against hand-computed values, and bad sub-model specs failing clearly. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine } from '../src/engine/backend.js';
import { Mlp } from '../src/models/mlp.js';
import { ResNet, resnetConfig } from '../src/models/resnet.js';
import { Transformer } from '../src/models/transformer.js';
import { MultiHeadAttention } from '../src/nn/attention.js';
import { Grid } from '../src/sorted/grid.js';
import { parseSubModel, subModelId } from '../src/sorted/submodel.js';
import { Linear } from '../src/nn/linear.js';
import { seedStream } from '../src/nn/init.js';
import * as tf from '@tensorflow/tfjs-core';

before(async () => {
  await initEngine('cpu');
});

test('MLP cost: hand-computed parameters and FLOPs', () => {
  const m = new Mlp({ inputs: 784, hidden: [100, 100], classes: 10 });
  // full: 784·100+100 + 100·100+100 + 100·10+10
  assert.deepEqual(m.cost({}), { params: 78500 + 10100 + 1010, flops: 2 * (78400 + 10000 + 1000) });
  // depth 1, width 0.5: 784·50+50 + 50·10+10
  assert.deepEqual(m.cost({ depth: 1, width: 0.5 }), { params: 39250 + 510, flops: 2 * (39200 + 500) });
  assert.equal(m.parameterCount(), m.cost({}).params, 'the full cost counts every parameter');
});

test('ResNet cost: stem + one block by hand', () => {
  const cfg = resnetConfig({ inChannels: 1, imageSize: 8, classes: 10, stem: 4, widths: [4], blocks: [1] });
  const m = new ResNet(cfg);
  // stem conv 3·3·1·4 = 36 params, BN 8; block: 2 convs 3·3·4·4 = 144 each + 2 BN (8 each); head 4·10+10.
  const params = 36 + 8 + 2 * (144 + 8) + 50;
  assert.equal(m.cost({}).params, params);
  assert.equal(m.parameterCount(), params);
  const conv = (cin: number, cout: number) => 2 * 9 * cin * cout * 64;
  const bn = (c: number) => 4 * c * 64;
  const flops = conv(1, 4) + bn(4) + 2 * (conv(4, 4) + bn(4)) + 4 * 64 + 2 * 40;
  assert.equal(m.cost({}).flops, flops);
  // width 0.5: 2 channels everywhere.
  const half = m.cost({ width: 0.5 });
  assert.equal(half.params, 18 + 4 + 2 * (36 + 4) + 2 * 10 + 10);
});

test('Transformer cost equals its parameter count at full size; halves heads shrink attention', () => {
  const m = new Transformer({
    task: 'classify',
    classes: 2,
    vocab: 50,
    dim: 16,
    heads: 4,
    headDim: 4,
    ffn: 32,
    layers: 2,
    maxLen: 8,
  });
  assert.equal(m.cost({}).params, m.parameterCount());
  const full = m.cost({});
  const fewer = m.cost({ heads: 2 });
  // Q, K, V, O lose half their weights: 4 · (16·8) per layer, and Q/K/V lose 8 biases each.
  assert.equal(full.params - fewer.params, 2 * (4 * 16 * 8 + 3 * 8));
});

test('Linear.cost', () => {
  assert.deepEqual(Linear.cost(3, 5), { params: 20, flops: 30 });
});

test('grid: Cartesian product with stable ids, largest last, smallest first', () => {
  const m = new Mlp({ inputs: 4, hidden: [8, 8, 8, 8], classes: 2 });
  const g = new Grid({ depth: [4, 1, 2, 3], width: [0.25, 0.5, 0.75, 1] }, m);
  assert.equal(g.size, 16);
  assert.equal(g.smallest.id, 'depth=1,width=0.25');
  assert.equal(g.largest.id, 'depth=4,width=1');
  assert.equal(g.get('depth=2,width=0.5').sub.depth, 2);
  assert.equal(subModelId(parseSubModel('width=0.5,depth=2')), 'depth=2,width=0.5');
});

test('bad specs throw clear errors', () => {
  const m = new Mlp({ inputs: 4, hidden: [8, 8], classes: 2 });
  const x = tf.zeros([1, 4]);
  assert.throws(() => m.forward(x, { depth: 0 }), /depth 0 is outside 1\.\.2/);
  assert.throws(() => m.forward(x, { depth: 3 }), /depth 3 is outside 1\.\.2/);
  assert.throws(() => m.forward(x, { layers: { 'layers.0': 9 } }), /width 9 > layer size 8 in 'layers\.0'/);
  assert.throws(() => m.validate({ layers: { nope: 2 } }), /unknown layer 'nope'/);
  assert.throws(
    () => new Linear(4, 8, seedStream(1)).forward(tf.zeros([1, 4]), 12),
    /width 12 > layer size 8/,
  );
  assert.throws(
    () => new Linear(4, 8, seedStream(1)).forward(tf.zeros([1, 6])),
    /input width 6 > layer size 4/,
  );
  assert.throws(() => new MultiHeadAttention(10, 3, seedStream(1)), /dim 10 is not divisible by 3 heads/);
  const t = new Transformer({
    task: 'lm',
    vocab: 10,
    dim: 8,
    heads: 2,
    headDim: 4,
    ffn: 8,
    layers: 1,
    maxLen: 4,
  });
  assert.throws(() => t.validate({ heads: 3 }), /heads 3 > layer size 2/);
  assert.throws(() => parseSubModel('width=1.5'), /width=1.5 must be a fraction in \(0, 1\]/);
  assert.throws(() => parseSubModel('depth=2.5'), /depth=2.5 must be a positive integer/);
  assert.throws(() => parseSubModel('depth'), /cannot parse 'depth'/);
  assert.throws(() => new Grid({ depth: [] }, m), /non-empty list/);
  assert.throws(() => new Grid({ depth: [1, 5] }, m), /depth 5 is outside/);
  assert.throws(() => new Grid({ colour: [1] } as never, m), /unknown dimension 'colour'/);
});
