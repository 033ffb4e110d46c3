/**
 * PAD-Net models as ordinary sorted models: IMP keeps the highest scores, BN calibration averages
 * every batch, MoE dispatch equals the dense formulation, the trainer adds the aux loss from
 * ctx.aux, and a PAD ResNet with a depth × width grid extracts exactly.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { seedStream } from '../src/nn/init.js';
import { AuxLosses, type ForwardContext } from '../src/nn/module.js';
import { namedBatchNorms } from '../src/nn/batchnorm.js';
import { MoE, dispatchExperts, expertTokens, mixExperts } from '../src/dynamic/moe.js';
import { padLayers } from '../src/dynamic/partial.js';
import { maskGradients, partition, type LabelledBatch } from '../src/dynamic/imp.js';
import { PadResNet, padResNetConfig } from '../src/models/pad_resnet.js';
import { MoETransformer, MOE_TRANSFORMER_DEFAULTS } from '../src/models/moe_transformer.js';
import { buildModel, specOf } from '../src/models/index.js';
import { Grid } from '../src/sorted/grid.js';
import { FULL, subModelId } from '../src/sorted/submodel.js';
import { extractSubModel } from '../src/models/extract.js';
import { calibrateBatchNorm } from '../src/nn/calibrate.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { train, type StepLog } from '../src/train/trainer.js';
import type { SequenceDataset } from '../src/data/sequences.js';
import { assertClose } from './helpers.js';

before(async () => {
  await initEngine('cpu');
});

const evalCtx: ForwardContext = { mode: 'eval', key: 'full' };
const randn = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

function tinyPadResNet(seed = 1, blocks = [1, 1]): PadResNet {
  return new PadResNet(
    padResNetConfig({
      inChannels: 1,
      imageSize: 8,
      classes: 3,
      stem: 4,
      widths: [4, 6],
      blocks,
      kernels: 3,
      reduction: 2,
    }),
    seed,
  );
}

function imageBatches(count: number, size = 6, offset = 0): LabelledBatch[] {
  return Array.from({ length: count }, (_, i) => ({
    x: tf.add(randn([size, 8, 8, 1], 100 + i), offset * i),
    y: tf.tensor1d(
      Array.from({ length: size }, (_, j) => (i + j) % 3),
      'int32',
    ),
  }));
}

test('IMP keeps the elements with the HIGHEST |∂L/∂M| (one round: exactly the top κ)', () => {
  const model = tinyPadResNet();
  const batches = imageBatches(2);
  // The scores IMP sees in its one round: at M = 1, BN calibrated on the same batches.
  calibrateBatchNorm(
    model,
    FULL,
    'full',
    batches.map((b) => b.x),
  );
  const grads = maskGradients(model, batches, evalCtx);
  const scores = grads.map((g) => Array.from(tf.tidy(() => tf.abs(g).dataSync())));
  grads.forEach((g) => g.dispose());
  partition(model, batches, { kappa: 0.3, rounds: 1 });
  const kept: number[] = [];
  const dropped: number[] = [];
  padLayers(model).forEach((layer, i) => {
    const m = layer.masks[0].dataSync();
    scores[i].forEach((s, j) => (m[j] > 0.5 ? kept : dropped).push(s));
  });
  const lowestKept = Math.min(...kept);
  const highestDropped = Math.max(...dropped);
  assert.ok(
    lowestKept >= highestDropped && lowestKept > 0,
    `kept scores must all be ≥ dropped ones: lowest kept ${lowestKept}, highest dropped ${highestDropped}`,
  );
  model.dispose();
});

test('BN calibration averages EVERY batch (each weighs the same), not only the last', () => {
  const model = tinyPadResNet();
  // Batches with different means, so the last one alone differs from the average.
  const inputs = imageBatches(3, 6, 2).map((b) => b.x);
  const single = inputs.map((x) => {
    calibrateBatchNorm(model, FULL, 'full', [x]);
    return new Map(namedBatchNorms(model).map(([n, bn]) => [n, tf.clone(bn.statsFor('full')!.mean)]));
  });
  calibrateBatchNorm(model, FULL, 'full', inputs);
  for (const [name, bn] of namedBatchNorms(model)) {
    const s = bn.statsFor('full')!;
    assert.equal(s.count, 3, `${name}: batches counted`);
    tf.tidy(() => {
      const average = tf.div(tf.addN(single.map((m) => m.get(name)!)), 3);
      assertClose(s.mean, average, 1e-5, `${name}: mean of the three batch means`);
    });
  }
  // And calibration forgets what was there before (the key is reset first).
  calibrateBatchNorm(model, FULL, 'full', [inputs[0]]);
  assert.equal(namedBatchNorms(model)[0][1].statsFor('full')!.count, 1);
  assert.throws(() => calibrateBatchNorm(model, FULL, 'full', []), /no batches/);
  single.forEach((m) => tf.dispose([...m.values()]));
  model.dispose();
});

test('MoE dispatch (only the selected experts) equals the dense formulation, with shared weights and capacity', () => {
  const x = randn([20, 6], 1) as tf.Tensor2D;
  for (const [hidden, capacityFactor] of [
    [8, undefined],
    [undefined, undefined],
    [8, 0.5],
  ] as const) {
    const moe = new MoE(6, 5, seedStream(3), {
      experts: 4,
      topK: 2,
      hidden,
      capacityFactor,
      noisyGating: false,
    });
    moe.router.gate.assign(randn([6, 4], 4));
    const layers = moe.layers.map((l) => l.asLayer());
    const shared = moe.layers.map((l) => randn([l.outFeatures, l.inFeatures], 5) as tf.Tensor2D);
    tf.tidy(() => {
      const { gates } = moe.router.forward(x, evalCtx);
      // Only the selected (token, expert) pairs are computed: k per token, at most the capacity per expert.
      const lists = expertTokens(gates);
      const pairs = lists.reduce((a, l) => a + l.length, 0);
      if (capacityFactor === undefined) assert.equal(pairs, 20 * 2, 'k = 2 experts per token');
      else {
        const capacity = Math.ceil((capacityFactor * 2 * 20) / 4);
        assert.ok(
          lists.every((l) => l.length <= capacity) && pairs < 40,
          `capacity ${capacity}: ${lists.map((l) => l.length)}`,
        );
      }
      const what = `hidden ${hidden}, capacity ${capacityFactor}`;
      assertClose(
        dispatchExperts(x, gates, layers, 'gelu'),
        mixExperts(x, gates, layers, 'gelu'),
        1e-5,
        what,
      );
      assertClose(
        dispatchExperts(x, gates, layers, 'gelu', shared),
        mixExperts(x, gates, layers, 'gelu', shared),
        1e-5,
        `${what}, shared`,
      );
      // Same gradients with respect to the expert weights and the router.
      const loss = (f: typeof mixExperts) => () =>
        tf.sum(
          tf.square(
            f(
              x,
              moe.router.forward(x, evalCtx).gates,
              moe.layers.map((l) => l.asLayer()),
              'gelu',
            ),
          ),
        ) as tf.Scalar;
      const vars = [moe.router.gate, ...moe.layers.map((l) => l.weight)];
      const a = tf.variableGrads(loss(dispatchExperts), vars).grads;
      const b = tf.variableGrads(loss(mixExperts), vars).grads;
      for (const v of vars) assertClose(a[v.name], b[v.name], 1e-4, `${what}: ∂/∂${v.name}`);
    });
    shared.forEach((s) => s.dispose());
    moe.dispose();
  }
  x.dispose();
});

test('a PAD ResNet with a depth × width grid: sub-models run, and an extracted sub-model (masks sliced) equals its slice', () => {
  const model = tinyPadResNet(2, [2, 2]);
  const batches = imageBatches(2);
  partition(model, batches, { kappa: 0.4, threshold: 'per-layer' });
  padLayers(model).forEach((l, i) => l.phi.assign(tf.scalar(0.1 * i)));
  const grid = new Grid({ depth: [2, 3, 4], width: [0.5, 1] }, model);
  assert.equal(grid.size, 6);
  assert.ok(grid.smallest.cost.flops < grid.largest.cost.flops);
  const sub = { depth: 3, width: 0.5 };
  const key = subModelId(sub);
  calibrateBatchNorm(
    model,
    sub,
    key,
    batches.map((b) => b.x),
  );
  const small = extractSubModel(model, sub, (c) => buildModel(specOf(model, c)) as PadResNet);
  assert.ok(small.parameterCount() < model.parameterCount());
  assert.equal(small.namedBuffers().length, padLayers(small).length);
  tf.tidy(() =>
    assertClose(
      small.forward(batches[0].x, FULL, { mode: 'eval', key: 'full' }),
      model.forward(batches[0].x, sub, { mode: 'eval', key }),
      1e-5,
      'extracted vs sliced',
    ),
  );
  small.dispose();
  model.dispose();
});

/** A tiny MoE transformer config and 8 toy token sequences of 6 tokens (two classes). */
function toyMoE(o: { layers: number; noisyGating: boolean; stride: number }) {
  const config = {
    ...MOE_TRANSFORMER_DEFAULTS,
    vocab: 20,
    dim: 8,
    heads: 2,
    ffn: 12,
    layers: o.layers,
    maxLen: 6,
    experts: 4,
    noisyGating: o.noisyGating,
    ffnMode: 'moe' as const,
  };
  const n = 8;
  const data: SequenceDataset = {
    name: 'toy',
    sequences: Int32Array.from({ length: n * 6 }, (_, j) => 1 + ((j * o.stride) % 19)),
    labels: Int32Array.from({ length: n }, (_, i) => i % 2),
    n,
    seqLen: 6,
    vocab: 20,
    numClasses: 2,
  };
  return { config, data, n };
}

test('the trainer adds the aux loss from ctx.aux to the task loss (MoE transformer on token sequences)', async () => {
  const { config, data, n } = toyMoE({ layers: 1, noisyGating: false, stride: 7 });
  const model = new MoETransformer(config, 3);
  for (const l of model.blocks.items) (l.ffn as MoE).router.gate.assign(randn([8, 4], 7));
  // Expected first-step loss: cross-entropy + aux on the whole set (the one batch), before the update.
  const expected = tf.tidy(() => {
    const aux = new AuxLosses();
    const x = tf.tensor2d(data.sequences, [n, 6], 'int32');
    const logits = model.forward(x, FULL, { mode: 'train', key: 'full', seed: seedStream(1), aux });
    const ce = tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(data.labels, 'int32'), 2), logits);
    const a = aux.total().dataSync()[0];
    assert.ok(a > 1e-4, 'the aux loss is not negligible here');
    return ce.dataSync()[0] + a;
  });
  const logs: StepLog[] = [];
  const cfg = resolveTrainConfig({ steps: 1, batchSize: n, gAcc: 1, warmupSteps: 0 });
  await train(model, new Grid({}, model), data, cfg, { onStep: (s) => logs.push(s) });
  assert.ok(Math.abs(logs[0].loss - expected) < 1e-4, `step loss ${logs[0].loss}, CE + aux ${expected}`);
  model.dispose();
});

test('sandwich with in-place distillation trains a noisy-gated MoE transformer (the teacher pass gets a seed)', async () => {
  const { config, data, n } = toyMoE({ layers: 2, noisyGating: true, stride: 5 });
  const model = new MoETransformer(config, 3);
  const grid = new Grid({ depth: [1, 2] }, model);
  const cfg = resolveTrainConfig({ strategy: 'sandwich', distill: true, steps: 2, batchSize: n, gAcc: 2 });
  const logs: StepLog[] = [];
  await train(model, grid, data, cfg, { onStep: (s) => logs.push(s) });
  assert.equal(logs.length, 2);
  assert.ok(logs.every((l) => Number.isFinite(l.loss) && !l.skipped));
  model.dispose();
});
