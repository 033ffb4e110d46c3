/**
 * `train --init-from`: a new run starts from another run's weights (sorted fine-tuning of a
 * pre-trained model). Its starting weights are the source's, its BatchNorm statistics only the
 * full model's, a model that does not fit is refused naming the tensors, and an LM made of a
 * full-only run trains its exits through the shared head.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { main } from '../src/cli/main.js';
import { initEngine } from '../src/engine/backend.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { buildModel } from '../src/models/index.js';
import { getPreset } from '../src/run/presets.js';
import { copyInitWeights } from '../src/run/init_from.js';
import { calibrateBatchNorm } from '../src/nn/calibrate.js';
import { FULL, subModelId } from '../src/sorted/submodel.js';
import { loadMobyDick } from '../src/data/text.js';
import type { LmEvalRow } from '../src/train/evaluate_lm.js';

let dir: string;
let source: string;
const quiet = async <T>(fn: () => Promise<T>): Promise<T> => {
  const { log, warn } = console;
  console.log = console.warn = () => {};
  try {
    return await fn();
  } finally {
    console.log = log;
    console.warn = warn;
  }
};
const small = ['--data', 'mnist', '--train-subset', '128', '--test-subset', '32', '--batch-size', '16'];

before(async () => {
  await initEngine('wasm');
  dir = mkdtempSync(join(tmpdir(), 'init-from-'));
  source = join(dir, 'source');
  const code = await quiet(() =>
    main(['train', '--run', source, '--model', 'mlp', ...small, '--steps', '3', '--no-eval']),
  );
  assert.equal(code, 0);
});

const weights = async (run: string) => {
  const { model } = await loadCheckpoint(run, undefined, { calibrated: false, skipOptimizer: true });
  const w = new Map([...model.stateDict(['parameter'])].map(([n, t]) => [n, Array.from(t.dataSync())]));
  model.dispose();
  return w;
};

test('a run started from another starts from its weights (and records the source in run.json)', async () => {
  const run = join(dir, 'soft');
  // A learning rate of 1e-30 leaves the weights where they started, to float precision.
  const args = [
    'train',
    '--init-from',
    source,
    '--run',
    run,
    '--steps',
    '1',
    '--optimizer',
    'sgd',
    '--seed',
    '5',
  ];
  assert.equal(await quiet(() => main([...args, '--lr', '1e-30', '--no-eval', '--grid', 'width=0.5,1'])), 0);
  const [a, b] = [await weights(source), await weights(run)];
  assert.deepEqual([...b.keys()], [...a.keys()]);
  for (const [n, x] of a) {
    const y = b.get(n)!;
    const diff = x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
    assert.ok(diff < 1e-6, `${n}: differs from the source by ${diff}`);
  }
  const rec = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as {
    model: string;
    grid: unknown;
    initFrom: { from: string; step: number };
  };
  assert.equal(rec.model, 'mlp'); // the source's model
  assert.deepEqual(rec.grid, { width: [0.5, 1] }); // the user's grid
  assert.equal(rec.initFrom.from, source);
  assert.equal(rec.initFrom.step, 3);
});

test('a conflicting --model, --resume, and a model that does not fit are refused by name', async () => {
  await assert.rejects(
    quiet(() => main(['train', '--init-from', source, '--run', join(dir, 'x1'), '--model', 'resnet-small'])),
    /--model resnet-small conflicts with the model of --init-from .*source \(mlp\)/,
  );
  await assert.rejects(
    quiet(() => main(['train', '--init-from', source, '--run', join(dir, 'x2'), '--resume'])),
    /--init-from starts a new run .*--resume continues a run/,
  );
  await assert.rejects(
    quiet(() => main(['train', '--init-from', join(dir, 'nowhere'), '--run', join(dir, 'x3')])),
    /--init-from .*nowhere: no such folder/,
  );
  // The library: a model of another width gets no weights, and the error lists the tensors.
  const spec = getPreset('mlp').model({ channels: 1, size: 28, classes: 10 });
  const other = { ...spec, config: { ...(spec.config as object), hidden: [48, 48] } } as typeof spec;
  const [a, b] = [buildModel(spec, 1), buildModel(other, 2)];
  const before = b.stateDict(['parameter']).values().next().value!.dataSync().slice();
  assert.throws(
    () => copyInitWeights(b, a, 'src'),
    /--init-from src: the weights do not fit the model .*shapes differ: '[^']+' is \[[0-9, ]+\] there, \[[0-9, ]+\] here/,
  );
  assert.deepEqual(b.stateDict(['parameter']).values().next().value!.dataSync(), before); // nothing written
  a.dispose();
  b.dispose();
});

test('BatchNorm: the full model keeps the source statistics, other sub-models calibrate afresh', () => {
  const spec = getPreset('resnet-small').model({ channels: 1, size: 12, classes: 3 });
  const [a, b] = [buildModel(spec, 1), buildModel(spec, 2)];
  const x = [tf.randomNormal([4, 12, 12, 1], 0, 1, 'float32', 7)];
  const half = { depth: 3 };
  calibrateBatchNorm(a, FULL, subModelId(FULL), x);
  calibrateBatchNorm(a, half, subModelId(half), x);
  calibrateBatchNorm(b, half, subModelId(half), x);
  copyInitWeights(b, a, 'a');
  const statsA = a.stateDict(['stats']);
  const statsB = b.stateDict(['stats']);
  const full = [...statsA.keys()].filter((n) => n.includes(`.stats.${subModelId(FULL)}.`));
  assert.ok(full.length > 0);
  assert.deepEqual([...statsB.keys()].sort(), full.sort()); // no sub-model's statistics came along
  for (const n of full) assert.deepEqual(statsB.get(n)!.dataSync(), statsA.get(n)!.dataSync(), n);
  tf.dispose(x);
  a.dispose();
  b.dispose();
});

test('LM: SoFT of a full-only decoder trains its exits through the shared head', async () => {
  const book = join(dir, 'book.txt');
  writeFileSync(book, loadMobyDick().slice(20_000, 60_000));
  const lm = join(dir, 'lm');
  const data = ['--data', `text:${book}`];
  const base = [
    'train',
    '--model',
    'lm-gpt-tiny',
    ...data,
    '--run',
    lm,
    '--steps',
    '10',
    '--strategy',
    'full-only',
  ];
  assert.equal(await quiet(() => main(base)), 0);
  const soft = join(dir, 'lm-soft');
  const args = ['train', '--init-from', lm, '--run', soft, '--steps', '4', '--strategy', 'all-exits'];
  assert.equal(await quiet(() => main(args)), 0);
  const read = (run: string) =>
    new Map(
      (JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8')) as LmEvalRow[]).map((r) => [r.id, r.loss]),
    );
  const [pre, post] = [read(lm), read(soft)];
  // The tokenizer came with the weights: the same validation windows, so losses compare.
  assert.equal(JSON.parse(readFileSync(join(soft, 'run.json'), 'utf8')).model, 'lm-gpt-tiny');
  const gain = (id: string) => pre.get(id)! - post.get(id)!;
  // The first exit, never trained by the source, improves; the full model keeps what it had
  // (4 steps from random weights would leave it far behind the source's 10).
  assert.ok(gain('depth=1') > 0.05, `depth=1 gained only ${gain('depth=1')}`);
  assert.ok(gain('depth=3') > -0.05, `depth=3 lost ${-gain('depth=3')} to SoFT`);
});
