/**
 * A training step of every model family runs on `wasm` and on `cpu` and gives the same loss and
 * gradients from the same seed; the test also lists every kernel such a step needs, per backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, type BackendName } from '../src/engine/backend.js';
import { kernelsUsed, missingKernels } from '../src/engine/kernels_used.js';
import { buildModel, type ModelSpec } from '../src/models/index.js';
import { tinyMobileNetV2, tinyResNet } from './tiny_models.js';

const FAMILIES: Record<string, { spec: ModelSpec; input: () => tf.Tensor; sub: object }> = {
  mlp: {
    spec: { family: 'mlp', config: { inputs: 64, hidden: [32, 32], classes: 4 } },
    input: () => tf.randomNormal([8, 8, 8, 1], 0, 1, 'float32', 1),
    sub: { depth: 2, width: 0.5 },
  },
  resnet: {
    spec: {
      family: 'resnet',
      config: tinyResNet({ imageSize: 8, classes: 4, stem: 8, widths: [8, 16] }),
    },
    input: () => tf.randomNormal([8, 8, 8, 1], 0, 1, 'float32', 2),
    sub: { depth: 2, width: 0.5 },
  },
  mobilenetv2: {
    spec: {
      family: 'mobilenetv2',
      config: tinyMobileNetV2({
        imageSize: 8,
        classes: 4,
        rows: [
          [1, 8, 1, 1],
          [2, 16, 1, 2],
        ],
      }),
    },
    input: () => tf.randomNormal([8, 8, 8, 1], 0, 1, 'float32', 3),
    sub: { width: 0.5, expand: 0.5 },
  },
  transformer: {
    spec: {
      family: 'transformer',
      config: { task: 'lm', vocab: 16, dim: 16, heads: 2, headDim: 8, ffn: 32, layers: 2, maxLen: 8 },
    },
    input: () =>
      tf.tensor2d(
        Array.from({ length: 16 }, (_, i) => (i * 7) % 16),
        [2, 8],
        'int32',
      ),
    sub: { depth: 1, heads: 1 },
  },
};

/** Loss and the flattened gradient of one step, plus the kernels it used. */
async function step(
  backend: BackendName,
  family: string,
): Promise<{ loss: number; grads: Float32Array; kernels: string[] }> {
  await initEngine(backend);
  const f = FAMILIES[family];
  const model = buildModel(f.spec, 7);
  const x = f.input();
  let out: { loss: number; grads: Float32Array } = { loss: 0, grads: new Float32Array() };
  const kernels = await kernelsUsed(() => {
    const { value, grads } = tf.variableGrads(() => {
      const logits = model.forward(x, f.sub, { mode: 'train', key: 'k' });
      const classes = logits.shape[logits.rank - 1] as number;
      const flat = tf.reshape(logits, [-1, classes]);
      const ids = Array.from({ length: flat.shape[0] }, (_, i) => i % classes);
      const labels = tf.oneHot(tf.tensor1d(ids, 'int32'), classes);
      return tf.losses.softmaxCrossEntropy(labels, flat) as tf.Scalar;
    }, model.trainableVariables());
    const names = model
      .namedParameters()
      .map(([, v]) => v.name)
      .filter((n) => grads[n]);
    out = {
      loss: value.dataSync()[0],
      grads: tf.concat(names.map((n) => tf.reshape(grads[n], [-1]))).dataSync() as Float32Array,
    };
  });
  model.dispose();
  return { ...out, kernels };
}

for (const family of Object.keys(FAMILIES)) {
  test(`${family}: a training step gives the same loss and gradients on wasm and cpu; every kernel exists on both`, async () => {
    const cpu = await step('cpu', family);
    const wasm = await step('wasm', family);
    assert.ok(Math.abs(cpu.loss - wasm.loss) <= 1e-4, `loss cpu ${cpu.loss} vs wasm ${wasm.loss}`);
    let maxDiff = 0;
    cpu.grads.forEach((g, i) => (maxDiff = Math.max(maxDiff, Math.abs(g - wasm.grads[i]))));
    assert.ok(maxDiff <= 1e-4, `gradients differ by ${maxDiff}`);
    assert.equal(cpu.grads.length, wasm.grads.length);
    for (const backend of ['wasm', 'cpu']) {
      assert.deepEqual(missingKernels(wasm.kernels, backend), [], `${family} needs kernels ${backend} lacks`);
    }
    // The list itself, for the record (node --test prints diagnostics).
    console.log(`# ${family} training step kernels: ${wasm.kernels.join(' ')}`);
  });
}
