/**
 * TypeScript-trained checkpoints → PyTorch (python/sortednet_torch): the same logits, within 1e-4,
 * for several sub-models of every family (per-sub-model BN statistics, prefix slicing, TF 'same'
 * padding, depth order, conv layout transposition, tied LM head, padded pooling).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import {
  buildModel,
  type ModelSpec,
  type SortedModel,
  type Transformer,
  type TransformerConfig,
} from '../src/models/index.js';
import { tinyMobileNetV2 } from './tiny_models.js';
import { Grid, type GridSpec } from '../src/sorted/grid.js';
import { parseSubModel, subModelId } from '../src/sorted/submodel.js';
import { train, type TrainData } from '../src/train/trainer.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { calibrationBatches } from '../src/train/evaluate.js';
import { calibrateBatchNorm } from '../src/nn/calibrate.js';
import { checkpointDir, loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint.js';
import { decodeSafetensors, encodeSafetensors, type NamedArray } from '../src/io/safetensors.js';
import { loadMnist } from '../src/data/mnist.js';
import { subset, type ImageDataset } from '../src/data/dataset.js';
import { tokenDataset } from '../src/data/tokens.js';
import { PYTHON_PACKAGE, runPython, scratch, smallResNet, torchSkip } from './torch_helpers.js';

interface Case {
  name: string;
  spec: ModelSpec;
  grid: GridSpec;
  /** Sub-models compared, by id (includes per-layer overrides outside the grid). */
  subs: string[];
  data?: TrainData;
  input: () => tf.Tensor;
}

let mnist: ImageDataset;
const cases: Case[] = [];

before(async () => {
  await initEngine('wasm');
  mnist = subset(loadMnist().train, 256, 7);
  const text = 'the quick brown fox jumps over the lazy dog; sorted sub-models share one set of weights. ';
  const tokens = Int32Array.from(Buffer.from(text.repeat(8)), (b) => b % 64);
  const images = () => tf.tensor4d(mnist.images.subarray(0, 6 * 784), [6, 28, 28, 1]);
  cases.push(
    {
      name: 'mlp',
      spec: { family: 'mlp', config: { inputs: 784, hidden: [32, 24, 16], classes: 10 } },
      grid: { depth: [1, 2, 3], width: [0.5, 1] },
      subs: ['full', 'depth=1,width=0.5', 'depth=2,width=1', 'layers.0=7,layers.1=5'],
      data: mnist,
      input: images,
    },
    {
      name: 'resnet',
      // 28 → 14 → 7 → 4: stride-2 'same' convs on even (asymmetric padding) and odd sizes.
      spec: smallResNet([8, 12, 16], [2, 1, 1]),
      grid: { depth: [3, 4], width: [0.5, 1] },
      subs: ['full', 'depth=3,width=0.5', 'depth=4,width=0.5', 'stages.0.0.conv2=5'],
      data: mnist,
      input: images,
    },
    {
      name: 'mobilenetv2',
      spec: {
        family: 'mobilenetv2',
        config: tinyMobileNetV2({
          rows: [
            [1, 8, 1, 1],
            [4, 12, 2, 2],
            [4, 16, 1, 2],
          ],
          last: 32,
        }),
      },
      grid: { depth: [3, 4], width: [0.5, 1], expand: [0.5, 1] },
      subs: ['full', 'depth=3,width=0.5,expand=0.5', 'depth=4,width=1,expand=0.5'],
      data: mnist,
      input: images,
    },
    {
      name: 'transformer-lm',
      spec: {
        family: 'transformer',
        config: { task: 'lm', vocab: 64, dim: 16, heads: 2, headDim: 8, ffn: 32, layers: 2, maxLen: 16 },
      },
      grid: { depth: [1, 2], heads: [1, 2], ffn: [0.5, 1], embed: [0.5, 1] },
      subs: [
        'full',
        'depth=1,heads=1,ffn=0.5,embed=0.5',
        'depth=2,heads=1,embed=0.5',
        'blocks.0.ffn=8,blocks.1.attn=1,blocks.1.ffn=20',
      ],
      data: tokenDataset('text', tokens, 16, 64),
      input: () => tf.tensor2d(tokens.subarray(0, 3 * 16), [3, 16], 'int32'),
    },
    {
      // An extracted Mix'n'Match model: per-block heads and FFN widths in its config.
      name: 'transformer-per-block',
      spec: {
        family: 'transformer',
        config: {
          task: 'lm',
          vocab: 64,
          dim: 16,
          heads: [2, 1],
          headDim: 8,
          ffn: [8, 32],
          layers: 2,
          maxLen: 16,
        },
      },
      grid: { depth: [1, 2], layers: { 'blocks.1.ffn': [16, 32] } },
      subs: ['full', 'depth=1', 'blocks.1.ffn=16'],
      data: tokenDataset('text', tokens, 16, 64),
      input: () => tf.tensor2d(tokens.subarray(0, 3 * 16), [3, 16], 'int32'),
    },
    {
      name: 'transformer-classify',
      spec: {
        family: 'transformer',
        config: {
          task: 'classify',
          vocab: 64,
          dim: 16,
          heads: 2,
          headDim: 8,
          ffn: 32,
          layers: 2,
          maxLen: 12,
          classes: 3,
          padId: 0,
        },
      },
      grid: { depth: [1, 2], heads: [1, 2] },
      subs: ['full', 'depth=1,heads=1', 'depth=2,heads=1'],
      // Padding (id 0) at the ends of some rows: pooling must skip it.
      input: () =>
        tf.tensor2d([5, 9, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...tokens.subarray(0, 24)], [3, 12], 'int32'),
    },
  );
  // The LLaMA-style option (RMSNorm, rotary, SwiGLU, no biases), where this build has it.
  const llama: ModelSpec = {
    family: 'transformer',
    config: {
      task: 'lm',
      vocab: 64,
      dim: 16,
      heads: 2,
      headDim: 8,
      ffn: 24,
      layers: 2,
      maxLen: 16,
      arch: 'llama',
      ropeBase: 500,
    } as TransformerConfig,
  };
  const probe = buildModel(llama) as Transformer;
  if (probe.positions === null) {
    cases.push({
      name: 'transformer-llama',
      spec: llama,
      grid: { depth: [1, 2], heads: [1, 2], ffn: [0.5, 1], embed: [0.5, 1] },
      subs: [
        'full',
        'depth=1,heads=1,ffn=0.5,embed=0.5',
        'depth=2,heads=1,embed=0.5',
        'blocks.0.ffn=6,blocks.1.attn=1',
      ],
      data: tokenDataset('text', tokens, 16, 64),
      input: () => tf.tensor2d(tokens.subarray(0, 3 * 16), [3, 16], 'int32'),
    });
  }
  probe.dispose();
});

/** Trains a few steps in TypeScript, calibrates BN, saves the checkpoint and the expected logits. */
async function writeCase(root: string, c: Case): Promise<string> {
  const dir = join(root, c.name);
  const model: SortedModel = buildModel(c.spec, 3);
  const grid = new Grid(c.grid, model);
  const config = resolveTrainConfig({ steps: 3, batchSize: 16, gAcc: 2, warmupSteps: 1, seed: 5 });
  if (c.data) await train(model, grid, c.data, config);
  const tensors = new Map<string, NamedArray>();
  const x = c.input();
  tensors.set('x', {
    dtype: x.dtype === 'int32' ? 'I32' : 'F32',
    shape: x.shape,
    data: x.dataSync() as Float32Array,
  });
  const calibration = model.input === 'image' ? calibrationBatches(mnist, 2, 32) : null;
  for (const id of c.subs) {
    const sub = parseSubModel(id);
    const key = subModelId(sub);
    if (calibration) calibrateBatchNorm(model, sub, key, calibration);
    const logits = tf.tidy(() => model.forward(x, sub, { mode: 'eval', key }));
    tensors.set(`logits:${key}`, {
      dtype: 'F32',
      shape: logits.shape,
      data: logits.dataSync() as Float32Array,
    });
    logits.dispose();
  }
  if (calibration) tf.dispose(calibration);
  saveCheckpoint(dir, { model, grid: c.grid, step: config.steps, seed: 3 });
  writeFileSync(join(dir, 'cases.safetensors'), encodeSafetensors(tensors));
  x.dispose();
  model.dispose();
  return dir;
}

test('PyTorch reproduces TypeScript-trained logits of every family (1e-4)', { skip: torchSkip }, async () => {
  const root = scratch('torch-roundtrip-');
  const dirs: string[] = [];
  for (const c of cases) dirs.push(await writeCase(root, c));
  const back = join(root, 'from-python');
  const out = JSON.parse(
    runPython([join(PYTHON_PACKAGE, 'tests', 'compare_logits.py'), '--resave', back, ...dirs]),
  ) as Record<string, Record<string, number>>;
  if (process.env.TORCH_TEST_VERBOSE) console.log(JSON.stringify(out, null, 1));
  for (const c of cases) {
    const got = out[c.name];
    assert.ok(got, `no result for ${c.name}`);
    assert.deepEqual(Object.keys(got).sort(), c.subs.map((s) => subModelId(parseSubModel(s))).sort());
    for (const [id, d] of Object.entries(got))
      assert.ok(d <= 1e-4, `${c.name} ${id}: max |diff| ${d} > 1e-4`);
    // The other direction: PyTorch saves the weights byte for byte as TypeScript did, the same BN
    // statistics (their metadata keys may come in another order), and TypeScript loads it.
    const ours = checkpointDir(join(root, c.name));
    const theirs = checkpointDir(join(back, c.name));
    const file = (dir: string, f: string) => readFileSync(join(dir, f));
    assert.ok(
      file(ours, 'model.safetensors').equals(file(theirs, 'model.safetensors')),
      `${c.name}: weights differ`,
    );
    const [a, b] = [ours, theirs].map((d) => decodeSafetensors(file(d, 'bn_stats.safetensors')));
    assert.deepEqual(b.metadata, a.metadata, `${c.name}: BN statistics counts differ`);
    assert.deepEqual(
      [...b.tensors.entries()].sort(),
      [...a.tensors.entries()].sort(),
      `${c.name}: BN statistics differ`,
    );
    const loaded = await loadCheckpoint(join(back, c.name));
    assert.equal(loaded.meta.step, 3);
    loaded.model.dispose();
  }
});
