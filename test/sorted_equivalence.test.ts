/**
 * Issue 2's core claims: a sliced sub-model equals a plain model built from copies of the sliced
 * weights; its gradient is zero outside the slice and equal to the plain model's inside.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, specOf, type SortedModel } from '../src/models/index.js';
import { Mlp } from '../src/models/mlp.js';
import { ResNet } from '../src/models/resnet.js';
import { MobileNetV2 } from '../src/models/mobilenetv2.js';
import { tinyMobileNetV2, tinyResNet } from './tiny_models.js';
import { Transformer } from '../src/models/transformer.js';
import { extractSubModel } from '../src/models/extract.js';
import { FULL, subModelId, type SubModel } from '../src/sorted/submodel.js';
import { prefix } from '../src/sorted/slice.js';
import { assertClose, rng } from './helpers.js';
import type { ForwardContext } from '../src/nn/module.js';

before(async () => {
  await initEngine('cpu');
});

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

function randomImages(b: number, h: number, c: number, seed: number): tf.Tensor4D {
  return tf.randomNormal([b, h, h, c], 0, 1, 'float32', seed) as tf.Tensor4D;
}

/** Calibrates BN (if any) for `sub` on x, extracts, and compares eval outputs. */
function checkEquivalence(model: SortedModel, sub: SubModel, x: tf.Tensor, tol = 1e-5): void {
  const key = subModelId(sub);
  tf.tidy(() => {
    model.forward(x, sub, { mode: 'calibrate', key });
  });
  const small = extractSubModel(model, sub, (c) => buildModel(specOf(model, c)));
  tf.tidy(() => {
    const a = model.forward(x, sub, { mode: 'eval', key });
    const b = small.forward(x, FULL, { mode: 'eval', key: subModelId(FULL) });
    assertClose(a, b, tol, `${model.family} ${key}`);
  });
  assert.ok(small.parameterCount() <= model.parameterCount());
  assert.equal(small.parameterCount() >= model.cost(sub).params * 0.5, true);
  small.dispose();
}

test('MLP: random sub-models equal their extracted plain models', () => {
  const model = new Mlp({ inputs: 20, hidden: [32, 24, 16], classes: 5 }, 3);
  const r = rng(1);
  const x = tf.randomNormal([6, 20], 0, 1, 'float32', 7);
  for (let i = 0; i < 6; i++) {
    const sub: SubModel = { depth: pick(r, [1, 2, 3]), width: pick(r, [0.25, 0.5, 0.75, 1]) };
    checkEquivalence(model, sub, x);
  }
  // Non-uniform per-layer widths.
  checkEquivalence(model, { depth: 3, layers: { 'layers.0': 5, 'layers.1': 24, 'layers.2': 3 } }, x);
});

test('MLP: a sub-model equals a hand-written forward on the sliced weights', () => {
  const model = new Mlp({ inputs: 8, hidden: [12, 12], classes: 3 }, 5);
  const x = tf.randomNormal([4, 8], 0, 1, 'float32', 9);
  tf.tidy(() => {
    const [w0, b0, w1, b1, wh, bh] = model.namedParameters().map(([, v]) => v);
    let h = tf.relu(tf.add(tf.matMul(x, tf.slice(w0, [0, 0], [6, 8]), false, true), tf.slice(b0, [0], [6])));
    h = tf.relu(tf.add(tf.matMul(h, tf.slice(w1, [0, 0], [6, 6]), false, true), tf.slice(b1, [0], [6])));
    const want = tf.add(tf.matMul(h, tf.slice(wh, [0, 0], [3, 6]), false, true), bh);
    assertClose(model.forward(x, { width: 0.5 }), want, 1e-6, 'hand-written MLP');
  });
});

test('ResNet: random sub-models (depth × width, per-layer widths) equal their extracted models', () => {
  const cfg = tinyResNet({ imageSize: 12, classes: 4, stem: 8, widths: [8, 16], blocks: [2, 2] });
  const model = new ResNet(cfg, 11);
  const x = randomImages(4, 12, 1, 3);
  const r = rng(2);
  for (let i = 0; i < 4; i++) {
    checkEquivalence(model, { depth: pick(r, [2, 3, 4]), width: pick(r, [0.25, 0.5, 0.75, 1]) }, x, 1e-4);
  }
  checkEquivalence(
    model,
    { depth: 4, layers: { stem: 3, 'stages.0.0.conv1': 5, 'stages.0.0.conv2': 6, 'stages.1.1.conv1': 2 } },
    x,
    1e-4,
  );
});

test('MobileNetV2: sub-models with width and expansion equal their extracted models', () => {
  const cfg = tinyMobileNetV2({ imageSize: 12, classes: 3 });
  const model = new MobileNetV2(cfg, 4);
  const x = randomImages(3, 12, 1, 5);
  checkEquivalence(model, { depth: 2, width: 0.5, expand: 0.5 }, x, 1e-4);
  checkEquivalence(model, { depth: 3, width: 0.75 }, x, 1e-4);
});

test('Transformer: sub-models over depth, heads, FFN and embedding equal their extracted models', () => {
  const model = new Transformer(
    { task: 'lm', vocab: 19, dim: 16, heads: 4, headDim: 4, ffn: 32, layers: 3, maxLen: 8 },
    6,
  );
  const ids = tf.tensor2d(
    [
      [1, 2, 3, 4, 5, 6],
      [7, 8, 9, 10, 11, 12],
    ],
    undefined,
    'int32',
  );
  const r = rng(3);
  for (let i = 0; i < 5; i++) {
    const sub = {
      depth: pick(r, [1, 2, 3]),
      heads: pick(r, [1, 2, 3, 4]),
      ffn: pick(r, [0.25, 0.5, 1]),
      embed: pick(r, [0.5, 0.75, 1]),
    };
    checkEquivalence(model, sub, ids);
  }
  const clf = new Transformer(
    {
      task: 'classify',
      classes: 3,
      vocab: 19,
      dim: 16,
      heads: 2,
      headDim: 8,
      ffn: 16,
      layers: 2,
      maxLen: 8,
      padId: 0,
    },
    7,
  );
  checkEquivalence(
    clf,
    { depth: 1, heads: 1, embed: 0.5 },
    tf.tensor2d(
      [
        [3, 4, 0, 0],
        [5, 6, 7, 0],
      ],
      undefined,
      'int32',
    ),
  );
});

/** Gradients of the sub-model loss, over the shared params, vs the extracted model's. */
function checkGradients(
  model: SortedModel,
  sub: SubModel,
  x: tf.Tensor,
  labels: tf.Tensor,
  tol = 1e-5,
): void {
  const ctx: ForwardContext = { mode: 'train', key: subModelId(sub) };
  const small = extractSubModel(model, sub, (c) => buildModel(specOf(model, c)));
  const loss = (m: SortedModel, s: SubModel, c: ForwardContext) => () =>
    tf.losses.softmaxCrossEntropy(
      tf.oneHot(labels as tf.Tensor1D, m.forward(x, s, c).shape[1] as number),
      m.forward(x, s, c),
    ) as tf.Scalar;
  const shared = tf.variableGrads(loss(model, sub, ctx));
  const plain = tf.variableGrads(loss(small, FULL, { mode: 'train', key: 'full' }));
  const sharedByName = new Map(model.namedParameters().map(([n, v]) => [n, shared.grads[v.name]]));
  const plainByName = new Map(small.namedParameters().map(([n, v]) => [n, plain.grads[v.name]]));
  for (const [name, v] of model.namedParameters()) {
    const g = sharedByName.get(name);
    const gp = plainByName.get(name);
    if (!gp) {
      // A parameter outside the sub-model (a skipped block): no gradient, or exactly zero.
      if (g)
        assert.equal(
          tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]),
          0,
          `${name} should get no gradient`,
        );
      continue;
    }
    assert.ok(g, `${name}: no gradient`);
    tf.tidy(() => {
      assertClose(prefix(g, gp.shape, name), gp, tol, `grad inside slice of ${name}`);
      // Outside the prefix box: total |g| minus |g inside| must be exactly zero.
      const outside = tf.sub(tf.sum(tf.abs(g)), tf.sum(tf.abs(prefix(g, gp.shape, name)))).dataSync()[0];
      assert.equal(outside, 0, `${name}: gradient outside the slice is ${outside}`);
      void v;
    });
  }
  tf.dispose([shared.value, plain.value, ...Object.values(shared.grads), ...Object.values(plain.grads)]);
  small.dispose();
}

test('gradients: zero outside the slice, equal to the plain model inside (MLP, ResNet, transformer)', () => {
  const y = tf.tensor1d([0, 1, 2, 1], 'int32');
  checkGradients(
    new Mlp({ inputs: 10, hidden: [16, 16, 16], classes: 3 }, 2),
    { depth: 2, width: 0.5 },
    tf.randomNormal([4, 10], 0, 1, 'float32', 1),
    y,
  );
  const cfg = tinyResNet({ imageSize: 8, classes: 3, stem: 8, widths: [8, 16], blocks: [2, 1] });
  checkGradients(new ResNet(cfg, 3), { depth: 2, width: 0.5 }, randomImages(4, 8, 1, 2), y, 1e-4);
  const lm = new Transformer(
    {
      task: 'classify',
      classes: 3,
      vocab: 11,
      dim: 16,
      heads: 4,
      headDim: 4,
      ffn: 24,
      layers: 2,
      maxLen: 6,
      padId: 0,
    },
    8,
  );
  checkGradients(
    lm,
    { depth: 1, heads: 2, ffn: 0.5, embed: 0.5 },
    tf.tensor2d(
      [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 0],
        [9, 10, 0],
      ],
      undefined,
      'int32',
    ),
    y,
  );
});
