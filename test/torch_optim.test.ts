/** PyTorch's optimizers (python/sortednet_torch/optim.py) update for update as the TypeScript ones. */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { Optimizer, cosineLr, type OptimizerConfig } from '../src/train/optim.js';
import { decodeSafetensors, encodeSafetensors, type NamedArray } from '../src/io/safetensors.js';
import { PYTHON_PACKAGE, runPython, scratch, torchSkip } from './torch_helpers.js';
import { rng } from './helpers.js';

before(() => initEngine('wasm'));

const STEPS = 5;
const WARMUP = 2;
const shapes: Record<string, number[]> = { 'a.weight': [3, 4], 'a.bias': [3], 'conv.weight': [3, 3, 2, 4] };
const configs: OptimizerConfig[] = [
  { kind: 'adamw', lr: 0.05, weightDecay: 0.5 },
  { kind: 'sgd', lr: 0.05, weightDecay: 0.5, momentum: 0.8 },
];

/** Runs the TypeScript optimizer on random parameters and gradients; writes both for Python. */
function runTypeScript(optimizer: OptimizerConfig, inPath: string): Map<string, tf.Tensor> {
  const r = rng(4);
  const random = (shape: number[]) =>
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r() - 0.5);
  const file = new Map<string, NamedArray>();
  const params: [string, tf.Variable][] = Object.entries(shapes).map(([n, s]) => {
    const data = random(s);
    file.set(`p:${n}`, { dtype: 'F32', shape: s, data });
    return [n, tf.variable(tf.tensor(data, s))];
  });
  const opt = new Optimizer(optimizer, params);
  for (let step = 0; step < STEPS; step++) {
    const grads = new Map<string, tf.Tensor>();
    for (const [n, s] of Object.entries(shapes)) {
      if (n === 'a.bias' && step === 2) continue; // a step without its gradient: no update, no decay
      const g = random(s);
      file.set(`g${step}:${n}`, { dtype: 'F32', shape: s, data: g });
      grads.set(n, tf.tensor(g, s));
    }
    opt.apply(grads, cosineLr(step, STEPS, optimizer.lr, WARMUP));
  }
  writeFileSync(inPath, encodeSafetensors(file));
  return new Map<string, tf.Tensor>([
    ...params.map(([n, v]) => [`p:${n}`, v] as [string, tf.Tensor]),
    ...[...opt.state].map(([k, v]) => [`s:${k}`, v] as [string, tf.Tensor]),
  ]);
}

test(
  'AdamW and SGD (decay, momentum, warm-up + cosine): the same parameters and state after 5 steps (1e-6)',
  { skip: torchSkip },
  () => {
    const dir = scratch('torch-optim-');
    const wants = configs.map((c) => runTypeScript(c, join(dir, `${c.kind}.in`)));
    runPython([
      join(PYTHON_PACKAGE, 'tests', 'optimizer_steps.py'),
      ...configs.flatMap((c) => [
        join(dir, `${c.kind}.in`),
        join(dir, `${c.kind}.out`),
        JSON.stringify({ optimizer: c, steps: STEPS, warmup: WARMUP }),
      ]),
    ]);
    configs.forEach((c, i) => {
      const got = decodeSafetensors(readFileSync(join(dir, `${c.kind}.out`))).tensors;
      assert.deepEqual([...got.keys()].sort(), [...wants[i].keys()].sort());
      for (const [k, t] of wants[i]) {
        const a = t.dataSync();
        const b = got.get(k)!.data;
        const d = Math.max(...Array.from(a, (v, j) => Math.abs(v - b[j])));
        assert.ok(d <= 1e-6, `${c.kind} ${k}: max |diff| ${d}`);
      }
    });
  },
);
