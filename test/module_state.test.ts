/**
 * Module state: stateDict() names every parameter, buffer and per-sub-model BatchNorm statistic by
 * its module path; loadStateDict() is the one copier (checkpoints, extraction, compaction), strict
 * by default, all-or-nothing; format-1 checkpoints still load to the logits their writer gave.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, specOf, type SortedModel } from '../src/models/index.js';
import { ResNet, resnetConfig } from '../src/models/resnet.js';
import { PadResNet, padResNetConfig } from '../src/models/pad_resnet.js';
import { MoETransformer, MOE_TRANSFORMER_DEFAULTS } from '../src/models/moe_transformer.js';
import { namedBatchNorms } from '../src/nn/batchnorm.js';
import { partition } from '../src/dynamic/imp.js';
import { padLayers } from '../src/dynamic/partial.js';
import { calibrateBatchNorm } from '../src/nn/calibrate.js';
import { extractSubModel } from '../src/models/extract.js';
import { prefix } from '../src/sorted/slice.js';
import { FULL, parseSubModel, subModelId, type SubModel } from '../src/sorted/submodel.js';
import { checkpointDir, loadCheckpoint, saveCalibration, saveCheckpoint } from '../src/io/checkpoint.js';
import { decodeSafetensors } from '../src/io/safetensors.js';
import { assertClose } from './helpers.js';

before(async () => {
  await initEngine('cpu');
});

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/checkpoint-v1', import.meta.url));
const SHAPE = { inChannels: 1, imageSize: 8, classes: 3, stem: 4, widths: [4, 6], blocks: [2, 2] };
const SUBS: SubModel[] = [FULL, { depth: 3, width: 0.5 }, { depth: 2, width: 0.5 }];
const images = (n: number, seed: number, shift = 0) =>
  Array.from({ length: n }, (_, i) =>
    tf.add(tf.randomNormal([6, 8, 8, 1], 0, 1, 'float32', seed + i), shift * i),
  );

/** A PAD ResNet with partitioned masks (buffers) and BN statistics for every sub-model of SUBS. */
function calibratedPadResNet(seed: number): PadResNet {
  const model = new PadResNet(padResNetConfig({ ...SHAPE, kernels: 3, reduction: 2 }), seed);
  const xs = images(2, 100);
  const ys = xs.map((_, i) =>
    tf.tensor1d(
      [0, 1, 2, 0, 1, 2].map((v) => (v + i) % 3),
      'int32',
    ),
  );
  partition(
    model,
    xs.map((x, i) => ({ x, y: ys[i] })),
    { kappa: 0.4, threshold: 'per-layer' },
  );
  padLayers(model).forEach((l, i) => l.phi.assign(tf.scalar(0.1 * i)));
  for (const [i, sub] of SUBS.entries())
    calibrateBatchNorm(model, sub, subModelId(sub), images(2 + i, 200 + i, 1));
  return model;
}

const evalLogits = (model: SortedModel, x: tf.Tensor, sub: SubModel, key = subModelId(sub)) =>
  tf.tidy(() => model.forward(x, sub, { mode: 'eval', key }));

function assertStateEqual(a: Map<string, tf.Tensor>, b: Map<string, tf.Tensor>, what: string): void {
  assert.deepEqual([...a.keys()], [...b.keys()], `${what}: names`);
  for (const [n, t] of a) {
    const u = b.get(n)!;
    assert.equal(u.dtype, t.dtype, `${what}: ${n} dtype`);
    assert.deepEqual(Array.from(u.dataSync()), Array.from(t.dataSync()), `${what}: ${n}`);
  }
}

test('stateDict names parameters, PAD masks and BN statistics of several sub-models by module path; loadStateDict restores them all', () => {
  const model = calibratedPadResNet(1);
  const state = model.stateDict();
  const names = [...state.keys()];
  for (const n of [
    'stem.weight',
    'stemBn.weight',
    'stemBn.stats.full.mean',
    'stemBn.stats.full.variance',
    'stemBn.stats.full.count',
    'stages.0.0.bn1.stats.depth=3,width=0.5.mean',
    'stages.1.0.bn2.stats.depth=2,width=0.5.variance',
    'stages.0.0.conv1.mask',
  ])
    assert.ok(names.includes(n), `${n} in the state dict`);
  // Parameters, buffers and statistics are the three kinds, and nothing else.
  const kinds = ['parameter', 'buffer', 'stats'] as const;
  const sizes = kinds.map((k) => model.stateDict([k]).size);
  assert.equal(sizes[0], model.namedParameters().length);
  assert.equal(sizes[1], model.namedBuffers().length);
  assert.equal(
    sizes.reduce((a, b) => a + b),
    state.size,
  );
  // Each BN holds 3 fields for each sub-model it was calibrated for.
  const calibrated = namedBatchNorms(model).map(([, bn]) => bn.statsKeys().length);
  assert.equal(sizes[2], 3 * calibrated.reduce((a, b) => a + b));
  assert.equal(calibrated[0], SUBS.length);
  assert.equal(state.get('stemBn.stats.full.count')!.dtype, 'int32');
  assert.equal(state.get('stemBn.stats.full.count')!.dataSync()[0], 2);

  const copy = new PadResNet(model.config, 9); // other weights, masks all 1, no statistics
  copy.loadStateDict(state);
  assertStateEqual(copy.stateDict(), state, 'round trip');
  const x = images(1, 7)[0];
  for (const sub of SUBS)
    assertClose(evalLogits(copy, x, sub), evalLogits(model, x, sub), 0, subModelId(sub));
  model.dispose();
  copy.dispose();
});

test('loadStateDict loads only the kinds asked for', () => {
  const model = calibratedPadResNet(1);
  const fresh = () => new PadResNet(model.config, 9);
  const statsOnly = fresh();
  const before = statsOnly.stateDict(['parameter', 'buffer']);
  const kept = new Map([...before].map(([n, t]) => [n, tf.clone(t)]));
  statsOnly.loadStateDict(model.stateDict(), { kinds: ['stats'] });
  assertStateEqual(statsOnly.stateDict(['stats']), model.stateDict(['stats']), 'statistics loaded');
  assertStateEqual(statsOnly.stateDict(['parameter', 'buffer']), kept, 'weights and masks untouched');
  const noStats = fresh();
  noStats.loadStateDict(model.stateDict(), { kinds: ['parameter', 'buffer'] });
  assert.equal(noStats.stateDict(['stats']).size, 0);
  assertStateEqual(
    noStats.stateDict(['parameter', 'buffer']),
    model.stateDict(['parameter', 'buffer']),
    'weights',
  );
  tf.dispose([...kept.values()]);
  [model, statsOnly, noStats].forEach((m) => m.dispose());
});

test('strict loads name what is missing, unexpected, misshapen or of another dtype, and change nothing', () => {
  const model = calibratedPadResNet(1);
  const target = new PadResNet(model.config, 9);
  const snapshot = new Map([...target.stateDict()].map(([n, t]) => [n, tf.clone(t)]));
  const state = new Map(model.stateDict());
  const load = (s: Map<string, tf.Tensor>) => () => target.loadStateDict(s, { where: 'file.safetensors' });

  const noHead = new Map(state);
  noHead.delete('head.bias');
  assert.throws(load(noHead), /^Error: file\.safetensors: 'head\.bias' is missing$/);
  const extra = new Map(state).set('stages.0.0.bn9.weight', tf.zeros([4]));
  assert.throws(load(extra), /file\.safetensors: 'stages\.0\.0\.bn9\.weight' matches nothing in the model/);
  const wide = new Map(state).set('head.bias', tf.zeros([5]));
  assert.throws(
    load(wide),
    /file\.safetensors: parameter 'head\.bias' has shape \[5\], the model's is \[3\]/,
  );
  const ints = new Map(state).set(
    'stages.0.0.conv1.mask',
    tf.zeros(state.get('stages.0.0.conv1.mask')!.shape, 'int32'),
  );
  assert.throws(load(ints), /buffer 'stages\.0\.0\.conv1\.mask' is int32, the model's is float32/);
  // Statistics: too many channels, a missing field, a field BatchNorm does not have.
  const tooWide = new Map(state).set('stemBn.stats.full.mean', tf.zeros([9]));
  assert.throws(
    load(tooWide),
    /'stemBn\.stats\.full\.mean' is float32 \[9\]; BatchNorm 'stemBn' has 4 channels/,
  );
  const noCount = new Map(state);
  noCount.delete('stemBn.stats.full.count');
  assert.throws(
    load(noCount),
    /'stemBn\.stats\.full\.count' is missing \(BatchNorm statistics need mean, variance, count\)/,
  );
  const odd = new Map(state).set('stemBn.stats.full.median', tf.zeros([4]));
  assert.throws(
    load(odd),
    /'stemBn\.stats\.full\.median': BatchNorm statistics have the fields mean, variance, count/,
  );
  // Statistics on a layer that keeps none are unexpected.
  const onConv = new Map(state).set('stem.stats.full.mean', tf.zeros([4]));
  assert.throws(load(onConv), /'stem\.stats\.full\.mean' matches nothing/);
  assertStateEqual(target.stateDict(), snapshot, 'a failed load changes nothing');

  // Not strict: the same gaps are returned (torch's missing / unexpected keys), the rest loads.
  const r = target.loadStateDict(new Map([...noHead, ['stages.0.0.bn9.weight', tf.zeros([4])]]), {
    strict: false,
  });
  assert.deepEqual(r, { missing: ['head.bias'], unexpected: ['stages.0.0.bn9.weight'] });
  assertClose(target.namedParameters()[0][1], model.namedParameters()[0][1], 0, 'loaded');
  tf.dispose([...snapshot.values()]);
  model.dispose();
  target.dispose();
});

/** Extraction as written before the state dict: prefix boxes copied by hand, the sub-model's BN statistics moved to 'full'. */
function handExtract(shared: SortedModel, sub: SubModel): Map<string, tf.Tensor> {
  const small = buildModel(specOf(shared, shared.shrink(sub)));
  const source = new Map([...shared.namedParameters(), ...shared.namedBuffers()]);
  const out = new Map<string, tf.Tensor>();
  for (const [n, v] of [...small.namedParameters(), ...small.namedBuffers()])
    out.set(n, tf.clone(prefix(source.get(n)!, v.shape, n)));
  const bns = new Map(namedBatchNorms(shared));
  for (const [n] of namedBatchNorms(small)) {
    const s = bns.get(n)!.statsFor(subModelId(sub))!;
    out.set(`${n}.stats.full.mean`, s.mean);
    out.set(`${n}.stats.full.variance`, s.variance);
    out.set(`${n}.stats.full.count`, tf.scalar(s.count, 'int32'));
  }
  small.dispose();
  return out;
}

test('slice mode equals extraction by hand: prefix boxes of weights and masks, the sub-model statistics as full', () => {
  const models: SortedModel[] = [
    calibratedPadResNet(1),
    new ResNet(resnetConfig({ ...SHAPE, widths: [4, 8] }), 2),
  ];
  for (const sub of SUBS.slice(1)) calibrateBatchNorm(models[1], sub, subModelId(sub), images(2, 300));
  for (const model of models) {
    for (const sub of SUBS.slice(1)) {
      const small = extractSubModel(model, sub, (c) => buildModel(specOf(model, c)));
      const want = handExtract(model, sub);
      const got = small.stateDict();
      // The hand-made list is parameters + buffers, then statistics; compare as sets of names.
      assertStateEqual(
        new Map([...got].sort()),
        new Map([...want].sort()),
        `${model.family} ${subModelId(sub)}`,
      );
      assert.deepEqual(
        namedBatchNorms(small).map(([, bn]) => bn.statsKeys()),
        namedBatchNorms(small).map(() => ['full']),
        'only the sub-model statistics move, as full',
      );
      const x = images(1, 8)[0];
      assertClose(evalLogits(small, x, FULL), evalLogits(model, x, sub), 1e-5, `${model.family} extracted`);
      small.dispose();
    }
    model.dispose();
  }
});

test('compaction copies the full statistics only, and the deployed model equals the masked one', () => {
  const model = calibratedPadResNet(1);
  const deployed = model.deploy();
  for (const [, bn] of namedBatchNorms(deployed)) assert.deepEqual(bn.statsKeys(), ['full']);
  const x = images(1, 9)[0];
  assertClose(evalLogits(deployed, x, FULL), evalLogits(model, x, FULL), 1e-5, 'deployed vs masked');
  model.dispose();
  deployed.dispose();
});

test('upcycling copies the parameters that match by name and shape; the stacked experts come from upcycle', () => {
  const config = { ...MOE_TRANSFORMER_DEFAULTS, vocab: 20, dim: 8, heads: 2, ffn: 16, maxLen: 8 };
  const dense = new MoETransformer(config, 1);
  const moe = new MoETransformer({ ...config, ffnMode: 'moe' }, 2);
  moe.upcycleFrom(dense); // 'blocks.0.ffn.up.weight' is [16, 8] in one, [experts, 16, 8] in the other
  const d = dense.stateDict();
  for (const [n, t] of moe.stateDict())
    if (d.has(n) && d.get(n)!.rank === t.rank) assertClose(t, d.get(n)!, 0, n);
  const up = moe.stateDict().get('blocks.0.ffn.up.weight')!;
  assertClose(
    tf.tidy(() => tf.slice(up, [3, 0, 0], [1, -1, -1]).squeeze([0])),
    d.get('blocks.0.ffn.up.weight')!,
    0,
    'expert 3',
  );
  dense.dispose();
  moe.dispose();
});

test('checkpoints store each kind of state by its state-dict name (statistics: mean, variance, count)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'module-state-'));
  try {
    const model = calibratedPadResNet(1);
    saveCheckpoint(dir, { model, grid: { depth: [2, 3, 4], width: [0.5, 1] }, step: 1, seed: 1 });
    const file = (f: string) => decodeSafetensors(readFileSync(join(checkpointDir(dir), f)));
    const kinds = {
      'model.safetensors': 'parameter',
      'buffers.safetensors': 'buffer',
      'bn_stats.safetensors': 'stats',
    } as const;
    for (const [f, kind] of Object.entries(kinds))
      assert.deepEqual([...file(f).tensors.keys()].sort(), [...model.stateDict([kind]).keys()].sort(), f);
    const count = file('bn_stats.safetensors').tensors.get('stemBn.stats.depth=3,width=0.5.count')!;
    assert.deepEqual({ ...count, data: Array.from(count.data) }, { dtype: 'I32', shape: [], data: [3] });
    const loaded = (await loadCheckpoint(dir)).model;
    assertStateEqual(loaded.stateDict(), model.stateDict(), 'saved and loaded');
    // Evaluation's statistics go to bn_calibrated.safetensors and replace those they name.
    calibrateBatchNorm(model, FULL, 'full', images(1, 500));
    saveCalibration(dir, model);
    const recalibrated = (await loadCheckpoint(dir)).model;
    assertStateEqual(recalibrated.stateDict(), model.stateDict(), 'with the calibration');
    assert.equal(
      (await loadCheckpoint(dir, undefined, { calibrated: false })).model
        .stateDict()
        .get('stemBn.stats.full.count')!
        .dataSync()[0],
      2,
    );
    [model, loaded, recalibrated].forEach((m) => m.dispose());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

interface Expected {
  input: { shape: number[]; data: number[] };
  saved: Record<string, number[]>;
  calibrated: Record<string, number[]>;
}

for (const family of ['resnet', 'pad-resnet']) {
  test(`a format-1 ${family} checkpoint (BN statistics named '<subId>|<module>.mean') loads to the logits its writer gave`, async () => {
    const run = join(FIXTURES, family);
    const expected = JSON.parse(readFileSync(join(run, 'expected.json'), 'utf8')) as Expected;
    const x = tf.tensor(expected.input.data, expected.input.shape);
    for (const [calibrated, logits] of [
      [false, expected.saved],
      [true, expected.calibrated],
    ] as const) {
      const { model, meta } = await loadCheckpoint(run, undefined, { calibrated });
      assert.equal(meta.format, 'sortednet-checkpoint/1');
      assert.deepEqual(namedBatchNorms(model)[0][1].statsKeys().sort(), Object.keys(logits).sort());
      for (const [key, want] of Object.entries(logits)) {
        const sub = parseSubModel(key);
        assertClose(
          evalLogits(model, x, sub),
          tf.tensor(want, [x.shape[0], 3]),
          1e-5,
          `${family} ${key} (calibrated: ${calibrated})`,
        );
      }
      // The legacy counts (in the metadata) became count entries.
      assert.equal(model.stateDict().get('stemBn.stats.full.count')!.dataSync()[0], calibrated ? 3 : 2);
      model.dispose();
    }
    x.dispose();
  });
}

test('dispose frees everything a model holds: parameters, buffers, BatchNorm statistics and folded scales', () => {
  const inputs = images(3, 900);
  const before = tf.memory().numTensors;
  const model = new ResNet(resnetConfig({ ...SHAPE, widths: [4, 8] }), 2);
  for (const sub of SUBS) {
    calibrateBatchNorm(model, sub, subModelId(sub), inputs.slice(0, 2));
    evalLogits(model, inputs[2], sub).dispose(); // each sub-model folds its statistics
  }
  model.dispose();
  assert.equal(tf.memory().numTensors, before, 'tensors left behind by a disposed model');
  tf.dispose(inputs);
});
