/**
 * torchvision → sortednet: random-weight resnet18, resnet50 and mobilenet_v2 in eval mode (Debian
 * python3-torchvision), saved as safetensors by python/tests/torchvision_logits.py, imported: the
 * full model's logits equal torchvision's within 1e-4, in TypeScript and again after ONNX export.
 * A sorted sub-model of each calibrates, extracts and exports like any other. Bad files are
 * refused with the names listed.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { initEngine } from '../src/engine/backend.js';
import { importTorchvision } from '../src/io/torchvision_node.js';
import { torchvisionFromSafetensors } from '../src/io/torchvision.js';
import { decodeSafetensors, encodeSafetensors, type NamedArray } from '../src/io/safetensors.js';
import { exportOnnx } from '../src/export/onnx/index.js';
import { saveCheckpoint } from '../src/io/checkpoint.js';
import { calibrateBatchNorm } from '../src/nn/calibrate.js';
import { subModelContext } from '../src/nn/module.js';
import type { MobileNetV2, ResNet, SortedModel } from '../src/models/index.js';
import { FULL, subModelId, type SubModel } from '../src/sorted/submodel.js';
import { PYTHON_PACKAGE, runPython, scratch, torchvisionSkip } from './torch_helpers.js';

const skip = torchvisionSkip();

const TOL = 1e-4;
/** Sizes where every stride-2 layer sees an even input: TensorFlow's 'same' would pad differently. */
const CASES = [
  { arch: 'resnet18', classes: 10, size: 64, seed: 1, sub: { depth: 5, width: 0.5 } },
  { arch: 'resnet50', classes: 7, size: 48, seed: 2, sub: { depth: 6, width: 0.5 } },
  { arch: 'mobilenet_v2', classes: 5, size: 64, seed: 3, sub: { depth: 9, width: 0.5, expand: 0.5 } },
] as const;

let dir = '';
before(async () => {
  await initEngine('wasm');
  if (skip) return;
  dir = scratch('sortednet-torchvision-');
  runPython([join(PYTHON_PACKAGE, 'tests', 'torchvision_logits.py'), dir, JSON.stringify(CASES)], {
    timeoutMs: 300_000,
  });
});

const io = (arch: string) => decodeSafetensors(readFileSync(join(dir, `${arch}.io.safetensors`))).tensors;
const tensorOf = (a: NamedArray) => tf.tensor(a.data, a.shape);

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

async function onnxLogits(model: SortedModel, sub: SubModel, x: tf.Tensor): Promise<Float32Array> {
  const e = exportOnnx(model, sub);
  const session = await ort.InferenceSession.create(e.bytes);
  const feed = new ort.Tensor('float32', x.dataSync() as Float32Array, x.shape);
  const out = (await session.run({ [e.input.name]: feed }))[e.output.name];
  await session.release();
  return out.data as Float32Array;
}

for (const c of CASES) {
  test(
    `torchvision ${c.arch}: imported logits equal torchvision's, in TypeScript and ONNX`,
    { skip },
    async () => {
      const imported = importTorchvision(join(dir, `${c.arch}.safetensors`), c.arch, { imageSize: c.size });
      const { spec } = imported;
      const model = imported.model as ResNet | MobileNetV2;
      assert.equal(
        (spec.config as { classes: number }).classes,
        c.classes,
        'classes read from the classifier',
      );
      const { input, logits } = Object.fromEntries(io(c.arch)) as Record<string, NamedArray>;
      const x = tensorOf(input);
      const want = logits.data;
      const scale = Math.max(...Array.from(want, Math.abs));
      const got = tf.tidy(() => model.forward(x, FULL, subModelContext(FULL, 'eval')).dataSync());
      const d = maxDiff(got, want);
      console.log(
        `# ${c.arch}: max |sortednet − torchvision| = ${d.toExponential(1)} (logits up to ${scale.toFixed(2)})`,
      );
      assert.ok(d <= TOL, `${c.arch}: max |sortednet − torchvision| ${d} > ${TOL}`);
      const viaOnnx = await onnxLogits(model, FULL, x);
      const dOnnx = maxDiff(viaOnnx, want);
      assert.ok(dOnnx <= TOL, `${c.arch}: max |onnx − torchvision| ${dOnnx} > ${TOL}`);

      // Sorted like any model: a smaller sub-model calibrates its own statistics, extracts, exports.
      calibrateBatchNorm(model, c.sub, subModelId(c.sub), [x]);
      const small = tf.tidy(() => model.forward(x, c.sub, subModelContext(c.sub, 'eval')).dataSync());
      assert.equal(small.length, want.length);
      assert.ok(
        small.every((v) => Number.isFinite(v)),
        `${c.arch} ${subModelId(c.sub)}: non-finite logits`,
      );
      const dSub = maxDiff(await onnxLogits(model, c.sub, x), small);
      assert.ok(dSub <= TOL, `${c.arch} ${subModelId(c.sub)}: max |onnx − tfjs| ${dSub} > ${TOL}`);
      assert.ok(model.cost(c.sub).flops < model.cost(FULL).flops);

      // The PyTorch package builds the same layout from the saved run: the same logits, full and sorted.
      const run = join(dir, `run-${c.arch}`);
      saveCheckpoint(run, { model, grid: { depth: [c.sub.depth, model.maxDepth] }, step: 0, seed: 1 });
      const cases = new Map<string, NamedArray>([
        ['x', input],
        ['logits:full', { dtype: 'F32', shape: logits.shape, data: Float32Array.from(got) }],
        [
          `logits:${subModelId(c.sub)}`,
          { dtype: 'F32', shape: logits.shape, data: Float32Array.from(small) },
        ],
      ]);
      writeFileSync(join(run, 'cases.safetensors'), encodeSafetensors(cases));
      const twin = (
        JSON.parse(runPython([join(PYTHON_PACKAGE, 'tests', 'compare_logits.py'), run])) as Record<
          string,
          Record<string, number>
        >
      )[`run-${c.arch}`];
      assert.equal(Object.keys(twin).length, 2);
      for (const [id, diff] of Object.entries(twin))
        assert.ok(diff <= TOL, `${c.arch} ${id}: max |PyTorch package − sortednet| ${diff} > ${TOL}`);
      x.dispose();
      model.dispose();
    },
  );
}

test('torchvision import: missing, extra and misshapen tensors are refused by name', { skip }, () => {
  const path = join(dir, 'resnet18.safetensors');
  const { tensors } = decodeSafetensors(readFileSync(path));
  const variant = (edit: (t: Map<string, NamedArray>) => void) => {
    const t = new Map(tensors);
    edit(t);
    return encodeSafetensors(t);
  };
  const missing = variant((t) => {
    t.delete('layer2.0.downsample.0.weight');
    t.delete('bn1.running_var');
  });
  assert.throws(
    () => torchvisionFromSafetensors(missing, 'resnet18'),
    /2 tensor\(s\) of torchvision resnet18 are missing: 'bn1\.running_var', 'layer2\.0\.downsample\.0\.weight'/,
  );
  const extra = variant((t) => t.set('layer5.0.conv1.weight', t.get('layer4.0.conv1.weight')!));
  assert.throws(
    () => torchvisionFromSafetensors(extra, 'resnet18'),
    /1 tensor\(s\) have no place in torchvision resnet18: 'layer5\.0\.conv1\.weight'/,
  );
  const shape = variant((t) => {
    const w = t.get('layer1.0.conv1.weight')!;
    t.set('layer1.0.conv1.weight', { ...w, shape: [64, 32, 3, 6] });
  });
  assert.throws(
    () => torchvisionFromSafetensors(shape, 'resnet18'),
    /tensor 'layer1\.0\.conv1\.weight': expected shape \[64, 64, 3, 3\], found \[64, 32, 3, 6\]/,
  );
  // The wrong architecture: every name of the difference is listed.
  assert.throws(
    () => torchvisionFromSafetensors(readFileSync(path), 'resnet34'),
    /are missing: 'layer1\.2\.conv1\.weight'/,
  );
  assert.throws(
    () => torchvisionFromSafetensors(readFileSync(path), 'resnet18', { classes: 3 }),
    /tensor 'fc\.weight': expected shape \[3, 512\], found \[10, 512\]/,
  );
  assert.throws(
    () => torchvisionFromSafetensors(readFileSync(path), 'vgg16'),
    /supported: resnet18, resnet34, resnet50, mobilenet_v2/,
  );
  const broken = join(dir, 'broken.safetensors');
  writeFileSync(broken, readFileSync(path).subarray(0, 1000));
  assert.throws(() => importTorchvision(broken, 'resnet18'), /broken\.safetensors/);
});
