/**
 * Inference with convolutions and their BatchNorm folded (src/nn/conv_bn.ts, src/nn/fold_cache.ts): the same
 * outputs as the stored layers for every CNN family, folds made once and kept, made again when the weights or
 * statistics change, held within the cache's budget, and never used where a gradient is taken.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { ResNet } from '../src/models/resnet.js';
import { MobileNetV2 } from '../src/models/mobilenetv2.js';
import type { SortedModel } from '../src/models/model.js';
import { calibrateBatchNorm } from '../src/nn/calibrate.js';
import { FoldCache } from '../src/nn/fold_cache.js';
import { subModelContext } from '../src/nn/module.js';
import { namedBatchNorms } from '../src/nn/batchnorm.js';
import { FULL, type SubModel } from '../src/sorted/submodel.js';
import { assertClose } from './helpers.js';
import { tinyMobileNetV2, tinyResNet } from './tiny_models.js';

before(async () => {
  await initEngine('wasm');
});

const images = (n: number, seed: number) =>
  tf.tidy(() => tf.randomUniform([n, 28, 28, 1], 0, 1, 'float32', seed) as tf.Tensor4D);

/** Calibrates every sub-model of `subs` on a few random batches. */
function calibrate(model: SortedModel, subs: readonly SubModel[]): void {
  const batches = [images(16, 1), images(16, 2)];
  for (const sub of subs) calibrateBatchNorm(model, sub, subModelContext(sub, 'eval').key, batches);
  tf.dispose(batches);
}

/** Logits of `sub` with the stored layers, and with `folds`. */
function bothWays(model: SortedModel, sub: SubModel, x: tf.Tensor, folds: FoldCache) {
  const stored = tf.tidy(() => model.forward(x, sub, subModelContext(sub, 'eval')));
  const folded = tf.tidy(() => model.forward(x, sub, subModelContext(sub, 'eval', { folds })));
  return { stored, folded };
}

const FAMILIES: [string, () => SortedModel, SubModel[]][] = [
  ['resnet (basic blocks, projection shortcuts)', () => new ResNet(tinyResNet(), 1), [FULL, { width: 0.5 }]],
  [
    'resnet, ImageNet stem and bottlenecks, symmetric padding',
    () =>
      new ResNet(
        tinyResNet({ stemLayout: 'imagenet', block: 'bottleneck', padding: 'symmetric', widths: [8, 16] }),
        1,
      ),
    [FULL, { width: 0.5 }],
  ],
  ['mobilenetv2 (depthwise, ReLU6)', () => new MobileNetV2(tinyMobileNetV2(), 1), [FULL, { width: 0.5 }]],
];

for (const [what, make, subs] of FAMILIES) {
  test(`folded inference equals the stored layers: ${what}`, () => {
    const model = make();
    calibrate(model, subs);
    const folds = new FoldCache();
    const x = images(3, 9);
    for (const sub of subs) {
      const { stored, folded } = bothWays(model, sub, x, folds);
      assertClose(
        folded,
        stored,
        1e-4 * (1 + tf.max(tf.abs(stored)).dataSync()[0]),
        `${what} ${JSON.stringify(sub)}`,
      );
      tf.dispose([stored, folded]);
    }
    assert.ok(folds.size > 0, 'the folds are kept');
    // A second pass makes nothing new: every fold is reused, and no tensor is left behind.
    const [size, bytes, tensors] = [folds.size, folds.bytes, tf.memory().numTensors];
    for (const sub of subs)
      tf.dispose(tf.tidy(() => model.forward(x, sub, subModelContext(sub, 'eval', { folds }))));
    assert.deepEqual([folds.size, folds.bytes, tf.memory().numTensors], [size, bytes, tensors]);
    folds.clear();
    assert.equal(folds.size, 0);
    assert.equal(folds.bytes, 0);
    assert.ok(tf.memory().numTensors < tensors, 'clearing disposes the folds');
    tf.dispose(x);
    model.dispose();
  });
}

test('a fold is made again when the weights or the BatchNorm statistics change', () => {
  const model = new ResNet(tinyResNet(), 1);
  const sub: SubModel = { width: 0.5 };
  calibrate(model, [sub]);
  const folds = new FoldCache();
  const x = images(2, 5);
  const check = (when: string) => {
    const { stored, folded } = bothWays(model, sub, x, folds);
    assertClose(folded, stored, 1e-4 * (1 + tf.max(tf.abs(stored)).dataSync()[0]), when);
    tf.dispose([stored, folded]);
  };
  check('before');
  const held = folds.size;
  const before = tf.tidy(() => model.forward(x, sub, subModelContext(sub, 'eval', { folds })));
  // New weights for the stem, as a training step or a load assigns them.
  const stem = model.stem.weight;
  stem.assign(tf.tidy(() => tf.mul(stem, -2)));
  check('after the stem weight changed');
  // New statistics, as recalibration makes them.
  const [, bn] = namedBatchNorms(model)[0];
  const batches = [images(16, 7)];
  calibrateBatchNorm(model, sub, subModelContext(sub, 'eval').key, batches);
  check('after recalibration');
  // Each layer's fold was replaced, not added beside the old one, and is found again.
  assert.equal(folds.size, held);
  const tensors = tf.memory().numTensors;
  const after = tf.tidy(() => model.forward(x, sub, subModelContext(sub, 'eval', { folds })));
  assert.equal(tf.memory().numTensors, tensors + 1, 'the second call after a change folds nothing');
  assert.ok(tf.max(tf.abs(tf.sub(after, before))).dataSync()[0] > 1e-3, 'the new weights are used');
  assert.ok(bn.statsFor(subModelContext(sub, 'eval').key));
  tf.dispose([before, after, x, ...batches]);
  folds.clear();
  model.dispose();
});

test('the fold cache holds at most its budget, least recently used out first; 0 bytes folds nothing', () => {
  const owner = {};
  const cache = new FoldCache(3 * 4 * 100); // three folds of 100 floats
  const make = () => [tf.zeros([100])];
  for (const key of ['a', 'b', 'c']) cache.get(owner, key, [], make);
  cache.get(owner, 'a', [], make); // 'a' used again: 'b' is now the least recent
  cache.get(owner, 'd', [], make);
  assert.equal(cache.size, 3);
  assert.equal(cache.bytes, 1200);
  let made = 0;
  const counted = () => {
    made++;
    return [tf.zeros([100])];
  };
  cache.get(owner, 'a', [], counted);
  cache.get(owner, 'c', [], counted);
  cache.get(owner, 'd', [], counted);
  assert.equal(made, 0, "'a', 'c' and 'd' are still held");
  cache.get(owner, 'b', [], counted);
  assert.equal(made, 1, "'b' was evicted");
  // What a fold was made from changed: made again, the old one disposed.
  const n = tf.memory().numTensors;
  cache.get(owner, 'b', ['other weights'], counted);
  assert.equal(made, 2);
  assert.equal(tf.memory().numTensors, n);
  // One fold larger than the budget is still returned whole (the caller uses it at once).
  const big = cache.get(owner, 'big', [], () => [tf.zeros([1000])]);
  assert.equal(big[0].isDisposed, false);
  assert.equal(cache.size, 1);
  cache.clear();
  assert.equal(cache.bytes, 0);

  const model = new ResNet(tinyResNet(), 1);
  calibrate(model, [FULL]);
  // One sub-model's folds are kept whole even past the budget: evicting one layer's to fold the next
  // would fold every layer again on every call.
  const small = new FoldCache(1);
  const y = images(2, 6);
  tf.dispose(tf.tidy(() => model.forward(y, FULL, subModelContext(FULL, 'eval', { folds: small }))));
  const [kept, count] = [small.size, tf.memory().numTensors];
  assert.ok(kept > 1);
  tf.dispose(tf.tidy(() => model.forward(y, FULL, subModelContext(FULL, 'eval', { folds: small }))));
  assert.deepEqual([small.size, tf.memory().numTensors], [kept, count]);
  // Lowering the budget evicts at once; 0 disposes everything.
  small.maxBytes = 0;
  assert.deepEqual([small.size, small.bytes, small.enabled], [0, 0, false]);
  assert.ok(tf.memory().numTensors < count);
  tf.dispose(y);
  const off = new FoldCache(0);
  const x = images(2, 3);
  const { stored, folded } = bothWays(model, FULL, x, off);
  assert.equal(off.size, 0);
  assert.deepEqual(Array.from(folded.dataSync()), Array.from(stored.dataSync()), 'the stored layers ran');
  tf.dispose([stored, folded, x]);
  model.dispose();
  assert.throws(() => new FoldCache(-1), /maxBytes must be ≥ 0/);
});

test('under a gradient the stored layers run: BatchNorm parameters get their gradient', () => {
  const model = new ResNet(tinyResNet(), 1);
  calibrate(model, [FULL]);
  const folds = new FoldCache();
  const x = images(2, 4);
  const [, bn] = namedBatchNorms(model)[0];
  const { grads } = tf.variableGrads(
    () => tf.sum(model.forward(x, FULL, subModelContext(FULL, 'eval', { folds }))) as tf.Scalar,
    [bn.gamma],
  );
  const g = grads[bn.gamma.name];
  assert.ok(g && tf.max(tf.abs(g)).dataSync()[0] > 0, 'γ has a gradient');
  assert.equal(folds.size, 0, 'nothing was folded');
  tf.dispose([x, ...Object.values(grads)]);
  model.dispose();
});
