/** ONNX export: every family's exported sub-model, run in onnxruntime-node, matches the TypeScript forward (1e-4). */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { initEngine } from '../src/engine/backend.js';
import type { SortedModel } from '../src/models/index.js';
import { Mlp } from '../src/models/mlp.js';
import { ResNet } from '../src/models/resnet.js';
import { MobileNetV2 } from '../src/models/mobilenetv2.js';
import { tinyMobileNetV2, tinyResNet } from './tiny_models.js';
import { Transformer } from '../src/models/transformer.js';
import { FULL, subModelId, type SubModel } from '../src/sorted/submodel.js';
import { exportOnnx, OPSET } from '../src/export/onnx/index.js';
import { samePads } from '../src/export/onnx/layers.js';

before(async () => {
  await initEngine('cpu');
});

const TOL = 1e-4;

/** Exports `sub`, runs it in onnxruntime on x, compares with the shared model's forward of `sub`. */
async function roundTrip(
  model: SortedModel,
  sub: SubModel,
  x: tf.Tensor,
  calibrate?: tf.Tensor,
): Promise<number> {
  const key = subModelId(sub);
  if (calibrate) tf.tidy(() => void model.forward(calibrate, sub, { mode: 'calibrate', key }));
  const expected = tf.tidy(() => model.forward(x, sub, { mode: 'eval', key }));
  const e = exportOnnx(model, sub);
  assert.equal(e.opset, OPSET);
  const session = await ort.InferenceSession.create(e.bytes);
  const feed =
    e.input.type === 'int64'
      ? new ort.Tensor(
          'int64',
          BigInt64Array.from(x.dataSync() as Int32Array, (v) => BigInt(v)),
          x.shape,
        )
      : new ort.Tensor('float32', x.dataSync() as Float32Array, x.shape);
  const out = (await session.run({ [e.input.name]: feed }))[e.output.name];
  assert.deepEqual(out.dims, expected.shape, `${model.family} ${key}: output shape`);
  const want = expected.dataSync();
  const got = out.data as Float32Array;
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(want[i] - got[i]));
  expected.dispose();
  await session.release();
  assert.ok(diff <= TOL, `${model.family} ${key}: max |onnx − tfjs| ${diff} > ${TOL}`);
  console.log(`# ${model.family} ${key} [${x.shape}]: max |onnx − tfjs| = ${diff.toExponential(1)}`);
  return diff;
}

const images = (n: number, size: number, c: number, seed: number) =>
  tf.randomNormal([n, size, size, c], 0, 1, 'float32', seed);

test('TF same padding: the extra pixel at the end', () => {
  assert.deepEqual(samePads(28, 3, 1), [1, 1, 1, 1]);
  assert.deepEqual(samePads(28, 3, 2), [0, 0, 1, 1]);
  assert.deepEqual(samePads(7, 3, 2), [1, 1, 1, 1]);
  assert.deepEqual(samePads(28, 1, 2), [0, 0, 0, 0]);
});

test('onnx: MLP sub-models (uniform, per-layer widths, GELU) match', async () => {
  const x = tf.randomNormal([5, 20], 0, 1, 'float32', 1);
  const relu = new Mlp({ inputs: 20, hidden: [32, 24, 16], classes: 5 }, 3);
  for (const sub of [FULL, { depth: 2, width: 0.5 }, { depth: 3, layers: { 'layers.0': 5, 'layers.2': 3 } }])
    await roundTrip(relu, sub, x);
  const geluMlp = new Mlp({ inputs: 20, hidden: [16, 16], classes: 3, activation: 'gelu' }, 4);
  await roundTrip(geluMlp, { width: 0.75 }, x);
});

test('onnx: ResNet sub-models (BN folded with the sub-model’s statistics, odd sizes, channel shortcuts) match', async () => {
  const rgb = { inChannels: 3, imageSize: 13, classes: 4 };
  const model = new ResNet(tinyResNet({ ...rgb, stem: 8, widths: [8, 16, 24], blocks: [2, 1, 1] }), 5);
  const calib = images(16, 13, 3, 2);
  const x = images(3, 13, 3, 3);
  for (const sub of [
    FULL,
    { depth: 3, width: 0.5 },
    { layers: { 'stages.0.0.conv2': 5, stem: 6 } },
    { layers: { 'stages.2.0.conv2': 12 } },
  ])
    await roundTrip(model, sub, x, calib);
});

test('onnx: MobileNetV2 sub-models (depthwise, ReLU6, residuals) match', async () => {
  const rows = [
    [1, 8, 1, 1],
    [4, 12, 2, 2],
    [4, 16, 2, 2],
  ] satisfies [number, number, number, number][];
  const model = new MobileNetV2(tinyMobileNetV2({ imageSize: 13, classes: 3, rows, last: 32 }), 6);
  const calib = images(16, 13, 1, 4);
  const x = images(3, 13, 1, 5);
  for (const sub of [FULL, { depth: 3, width: 0.5, expand: 0.5 }]) await roundTrip(model, sub, x, calib);
});

test('onnx: transformer classifier (padding, any length ≤ maxLen) and LM (causal, tied head) match', async () => {
  const cls = new Transformer(
    {
      task: 'classify',
      vocab: 50,
      dim: 32,
      heads: 4,
      headDim: 8,
      ffn: 64,
      layers: 3,
      maxLen: 16,
      classes: 3,
      padId: 0,
    },
    7,
  );
  const ids = (n: number, T: number, vocab: number, seed: number) =>
    tf.tidy(() => {
      const t = tf.randomUniform([n, T], 1, vocab, 'int32', seed);
      // Pad the tail of the first sequence.
      return tf.concat([
        tf.concat([tf.slice(t, [0, 0], [1, T - 4]), tf.zeros([1, 4], 'int32')], 1),
        tf.slice(t, [1, 0], [n - 1, T]),
      ]);
    });
  // The last: per-block heads and FFN widths (Mix'n'Match), exported at each block's own widths.
  const mix = { depth: 3, layers: { 'blocks.0.ffn': 16, 'blocks.1.attn': 1, 'blocks.2.ffn': 40 } };
  for (const sub of [FULL, { depth: 2, heads: 2, ffn: 0.5, embed: 0.5 }, mix]) {
    await roundTrip(cls, sub, ids(3, 16, 50, 1));
    await roundTrip(cls, sub, ids(2, 9, 50, 2));
  }
  const lm = new Transformer(
    { task: 'lm', vocab: 40, dim: 32, heads: 4, headDim: 8, ffn: 64, layers: 2, maxLen: 16 },
    8,
  );
  await roundTrip(lm, { depth: 1 }, ids(2, 7, 40, 3));
  await roundTrip(lm, FULL, ids(2, 16, 40, 4));
});

test('onnx: the file is a ModelProto with the opset, producer and sub-model stated', () => {
  const model = new Mlp({ inputs: 6, hidden: [8], classes: 2 }, 1);
  const e = exportOnnx(model, { width: 0.5 }, { metadata: { preprocess: '{}' } });
  const m = onnxProto.onnx.ModelProto.decode(e.bytes);
  assert.equal(Number(m.opsetImport[0]?.version), OPSET);
  assert.equal(m.producerName, 'sortednet');
  const meta = Object.fromEntries(m.metadataProps.map((p) => [p.key, p.value]));
  assert.deepEqual(meta, { family: 'mlp', sub: 'width=0.5', preprocess: '{}' });
  // The standalone sub-model's weights: the first 4 of 8 hidden units.
  const weights = (m.graph?.initializer ?? [])
    .filter((t) => t.dataType === 1)
    .map((t) => [t.name, (t.dims ?? []).map(Number)]);
  assert.deepEqual(weights, [
    ['layers.0.weight', [4, 6]],
    ['layers.0.bias', [4]],
    ['head.weight', [2, 4]],
    ['head.bias', [2]],
  ]);
});
