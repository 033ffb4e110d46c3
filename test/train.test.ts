/** The trainer: sampling P_B, gradient accumulation, exact resume, checkpoints, pick. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { Mlp } from '../src/models/mlp.js';
import { ResNet } from '../src/models/resnet.js';
import { tinyResNet } from './tiny_models.js';
import { Grid } from '../src/sorted/grid.js';
import { SubModelSampler } from '../src/sorted/sample.js';
import { train, type TrainState } from '../src/train/trainer.js';
import { trainRun } from '../src/run/train_run.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { checkpointDir, loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint.js';
import { loadMnist } from '../src/data/mnist.js';
import { subset, type ImageDataset } from '../src/data/dataset.js';
import { pickSubModel } from '../src/infer/pick.js';
import { decodeSafetensors } from '../src/io/safetensors.js';
import { rng } from './helpers.js';

let data: ImageDataset;
before(async () => {
  await initEngine('wasm');
  data = subset(loadMnist().train, 512, 3);
});

const mlp = () => new Mlp({ inputs: 784, hidden: [32, 32, 32], classes: 10 }, 4);
const weightsOf = (m: { namedParameters(): [string, tf.Variable][] }) =>
  m.namedParameters().map(([n, v]) => [n, Array.from(v.dataSync())] as const);

test('sampler: empirical frequencies follow P_B (uniform and custom weights)', () => {
  const g = new Grid({ depth: [1, 2, 3], width: [0.5, 1] }, mlp());
  const r = rng(5);
  const uniform = new SubModelSampler(g, {}, r);
  const counts = new Array(g.size).fill(0);
  const N = 30000;
  for (let i = 0; i < N; i++) counts[uniform.drawOne().index]++;
  for (const c of counts) assert.ok(Math.abs(c / N - 1 / 6) < 0.01, `uniform frequency ${c / N}`);
  const w = [1, 0, 0, 0, 0, 3];
  const custom = new SubModelSampler(g, { weights: w }, r);
  const c2 = new Array(g.size).fill(0);
  for (let i = 0; i < N; i++) c2[custom.drawOne().index]++;
  assert.ok(Math.abs(c2[0] / N - 0.25) < 0.01 && Math.abs(c2[5] / N - 0.75) < 0.01 && c2[1] === 0);
  const forced = new SubModelSampler(g, { alwaysIncludeLargest: true, alwaysIncludeSmallest: true }, r).draw(
    4,
  );
  assert.equal(forced[0].id, g.largest.id);
  assert.equal(forced[1].id, g.smallest.id);
  assert.throws(() => new SubModelSampler(g, { weights: [0, 0, 0, 0, 0, 0] }, r), /sum to 0/);
  assert.throws(() => new SubModelSampler(g, { weights: [1, 2] }, r), /2 weights given for a grid of 6/);
});

test('accumulation: gAcc micro-batches of B equal one batch of gAcc·B (no BN, same samples)', async () => {
  const base = {
    steps: 1,
    warmupSteps: 1,
    strategy: 'full-only' as const,
    optimizer: { kind: 'sgd' as const, lr: 0.1, momentum: 0 },
  };
  const a = mlp();
  const b = mlp();
  const g = new Grid({ depth: [3] }, a);
  await train(a, g, data, resolveTrainConfig({ ...base, gAcc: 4, batchSize: 16 }));
  await train(b, g, data, resolveTrainConfig({ ...base, gAcc: 1, batchSize: 64 }));
  const wa = weightsOf(a);
  const wb = weightsOf(b);
  let maxDiff = 0;
  wa.forEach(([, x], i) => x.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - wb[i][1][j])))));
  assert.ok(maxDiff < 1e-6, `weights differ by ${maxDiff}`);
  // And the update really moved the weights.
  const fresh = weightsOf(mlp());
  assert.ok(fresh[0][1].some((v, j) => Math.abs(v - wa[0][1][j]) > 1e-5));
});

test('resume: 3 steps + resume to 6 gives the same weights as 6 uninterrupted steps (ResNet with BN)', async () => {
  const cfg = tinyResNet();
  const tc = resolveTrainConfig({
    steps: 6,
    batchSize: 16,
    gAcc: 2,
    seed: 9,
    optimizer: { kind: 'adamw', lr: 0.01 },
    warmupSteps: 2,
  });
  const dirA = mkdtempSync(join(tmpdir(), 'sortednet-a-'));
  const dirB = mkdtempSync(join(tmpdir(), 'sortednet-b-'));
  const a = new ResNet(cfg, 2);
  const grid = new Grid({ depth: [2], width: [0.5, 1] }, a);
  await trainRun(dirA, a, grid, data, tc);
  const b1 = new ResNet(cfg, 2);
  await trainRun(dirB, b1, grid, data, { ...tc, checkpointEvery: 3 }, { stopAfter: 3 });
  b1.dispose();
  const b2 = new ResNet(cfg, 2); // a fresh process would rebuild the model the same way
  await trainRun(dirB, b2, grid, data, tc, { resume: true });
  assert.deepEqual(weightsOf(b2), weightsOf(a));

  // The trainer alone owns no files: the state it returns (or hands to onCheckpoint) is all a
  // caller needs to continue exactly.
  const c1 = new ResNet(cfg, 2);
  const handed: number[] = [];
  const half = await train(
    c1,
    grid,
    data,
    { ...tc, checkpointEvery: 2 },
    {
      stopAfter: 3,
      onCheckpoint: (s: TrainState) => handed.push(s.step),
    },
  );
  assert.deepEqual(handed, [2]);
  assert.equal(half.state.step, 3);
  await train(c1, grid, data, tc, { start: half.state });
  assert.deepEqual(weightsOf(c1), weightsOf(a));
});

test('checkpoint: step folders + latest, safetensors layout, round trip, corrupt files are refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sortednet-ck-'));
  const m = mlp();
  saveCheckpoint(dir, { model: m, grid: { depth: [1, 3] }, step: 0, seed: 4 });
  // The name first, then the seal of checkpoint.json (docs/checkpoint-format.md).
  assert.match(
    readFileSync(join(dir, 'checkpoints', 'latest'), 'utf8'),
    /^step-000000\n[0-9a-f]{64} {2}step-000000\/checkpoint\.json\n/,
  );
  const stepDir = join(dir, 'checkpoints', 'step-000000');
  assert.equal(checkpointDir(dir), stepDir);
  const { tensors, metadata } = decodeSafetensors(readFileSync(join(stepDir, 'model.safetensors')));
  assert.deepEqual(tensors.get('layers.0.weight')?.shape, [32, 784]);
  assert.equal(metadata.format, 'pt');
  const loaded = await loadCheckpoint(dir);
  assert.deepEqual(weightsOf(loaded.model), weightsOf(m));
  // A step folder itself, and the flat layout (checkpoint.json directly in the folder), load too.
  assert.deepEqual(weightsOf((await loadCheckpoint(stepDir)).model), weightsOf(m));
  // Corrupt one byte of the weights: loading must fail and say so.
  const path = join(stepDir, 'model.safetensors');
  const bytes = readFileSync(path);
  bytes[bytes.length - 1] ^= 0xff;
  writeFileSync(path, bytes);
  await assert.rejects(() => loadCheckpoint(dir), /model\.safetensors does not match checkpoint\.json/);
  assert.ok(existsSync(join(stepDir, 'checkpoint.json')));
  // Garbage instead of JSON.
  writeFileSync(join(stepDir, 'checkpoint.json'), '{not json');
  await assert.rejects(() => loadCheckpoint(dir), /not valid JSON/);
  await assert.rejects(() => loadCheckpoint(join(dir, 'nope')), /no checkpoint in/);
  assert.throws(() => decodeSafetensors(new Uint8Array([200, 0, 0, 0, 0, 0, 0, 0, 1])), /does not fit/);
});

test('pick: best sub-model within a budget, without search', () => {
  const rows = [
    { id: 'a', params: 10, flops: 100, accuracy: 0.9, latencyMs: 1 },
    { id: 'b', params: 20, flops: 200, accuracy: 0.95, latencyMs: 2 },
    { id: 'c', params: 40, flops: 400, accuracy: 0.94, latencyMs: 4 },
  ];
  assert.equal(pickSubModel(rows, { maxFlops: 450 })?.id, 'b');
  assert.equal(pickSubModel(rows, { maxFlops: 150 })?.id, 'a');
  assert.equal(pickSubModel(rows, { maxParams: 5 }), null);
  assert.equal(pickSubModel(rows, { maxLatencyMs: 3.5 })?.id, 'b');
  assert.equal(
    pickSubModel(
      rows.map(({ id, params, flops }) => ({ id, params, flops })),
      { maxFlops: 450 },
    )?.id,
    'c',
  );
  assert.throws(() => pickSubModel(rows, {}), /give a budget/);
  assert.throws(() => pickSubModel(rows, { maxFlops: -1 }), /must be a positive number/);
});

test('train config: unknown fields and bad values are refused', () => {
  assert.throws(() => resolveTrainConfig({ stpes: 3 } as never), /unknown field 'stpes'/);
  assert.throws(() => resolveTrainConfig({ strategy: 'magic' as never }), /strategy 'magic'/);
  assert.throws(() => resolveTrainConfig({ gAcc: 0 }), /gAcc must be a positive integer/);
  assert.throws(() => resolveTrainConfig({ optimizer: { kind: 'sgd', lr: 0 } }), /lr must be > 0/);
});
