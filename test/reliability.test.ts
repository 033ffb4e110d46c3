/**
 * Crash safety: kills at random points of a save loop and between the renames of a save, two
 * writers on one folder, divergence, evaluation between resumes, malformed checkpoint files.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import {
  checkpointDir,
  listCheckpoints,
  loadCheckpoint,
  readCheckpointMeta,
  removeStale,
  saveCalibration,
  saveCheckpoint,
} from '../src/io/checkpoint.js';
import { acquireRunLock, LOCK_FILE, lockTmpName } from '../src/io/lock.js';
import { CHILD_STEPS, runChild, type ChildRun } from '../bench/harness/train_child.js';
import { Mlp } from '../src/models/mlp.js';
import { ResNet } from '../src/models/resnet.js';
import { tinyResNet } from './tiny_models.js';
import { Grid } from '../src/sorted/grid.js';
import { namedBatchNorms } from '../src/nn/batchnorm.js';
import { train, DivergenceError, MAX_CONSECUTIVE_SKIPS, planStep } from '../src/train/trainer.js';
import { trainRun, truncateLog } from '../src/run/train_run.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { evaluateGrid } from '../src/train/evaluate.js';
import { loadMnist } from '../src/data/mnist.js';
import { subset, type ImageDataset } from '../src/data/dataset.js';
import { createRng, seed32, streamSeed } from '../src/data/random.js';
import { SubModelSampler } from '../src/sorted/sample.js';
import { encodeSafetensors, decodeSafetensors } from '../src/io/safetensors.js';
import { sha256Hex } from '../src/io/sha256.js';
import { rng } from './helpers.js';

const fresh = (tag: string) => mkdtempSync(join(tmpdir(), `sortednet-${tag}-`));

let data: ImageDataset;
before(async () => {
  await initEngine('wasm');
  data = subset(loadMnist().train, 256, 3);
});

const finalFiles = (runDir: string) => {
  const dir = checkpointDir(runDir);
  return ['model.safetensors', 'bn_stats.safetensors', 'optimizer.safetensors'].map((f) =>
    sha256Hex(readFileSync(join(dir, f))),
  );
};

test('kill -9 at random points of a save loop and at every stage of a save: always resumes, same result as uninterrupted', async () => {
  const reference = fresh('ref');
  let readyAt = 0;
  const r = await runChild([reference], undefined, (l) => l === 'ready' && (readyAt = performance.now()));
  const stepMs = (performance.now() - readyAt) / CHILD_STEPS;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readCheckpointMeta(reference).step, CHILD_STEPS);

  const runDir = fresh('kill');
  // Kills inside the save, by stage (nth save of that process): before the first checkpoint exists,
  // between the folder rename and the pointer, after the pointer, after pruning.
  const staged: [string, number][] = [
    ['written', 1],
    ['renamed', 1],
    ['renamed', 2],
    ['latest', 2],
    ['written', 3],
    ['pruned', 2],
  ];
  const random = rng(11);
  const kills: string[] = [];
  let completed = false;
  let lastStep = 0;
  for (let i = 0; i < 20 && !completed; i++) {
    const stage = staged[i];
    const run = stage
      ? await runChild([runDir, '--kill', stage.join(':')])
      : // Within one step's time after the next step is logged: in its save, or in the step after it.
        await runChild([runDir], {
          after: `step ${Math.min(CHILD_STEPS - 1, lastStep + 1)}`,
          ms: random() * stepMs,
        });
    if (run.code === 0) {
      completed = true;
      break;
    }
    assert.equal(run.signal, 'SIGKILL', `child failed instead of being killed: ${run.stderr}`);
    kills.push(stage ? stage.join('#') : 'random');
    // After every kill the folder holds a loadable checkpoint (or none yet), never older than the
    // one before the kill. (A kill between `latest` and pruning leaves an extra step folder; the next
    // complete save prunes it, which the end state below checks.)
    const step = listCheckpoints(runDir).length > 0 ? readCheckpointMeta(runDir).step : 0;
    assert.ok(
      step >= lastStep,
      `a good checkpoint was lost: step ${lastStep}, then ${step} after ${kills.at(-1)}`,
    );
    lastStep = step;
    if (step > 0) (await loadCheckpoint(runDir, undefined, { calibrated: false })).model.dispose();
  }
  assert.ok(kills.length >= 15, `only ${kills.length} kills landed: ${kills.join()}`);
  if (!completed) assert.equal((await runChild([runDir])).code, 0);
  assert.equal(readCheckpointMeta(runDir).step, CHILD_STEPS);
  assert.deepEqual(finalFiles(runDir), finalFiles(reference));
  // Nothing left over: no temporary files, the two newest step folders, the lock released.
  const left = readdirSync(join(runDir, 'checkpoints')).sort();
  assert.deepEqual(left, ['latest', `step-0000${CHILD_STEPS - 1}`, `step-0000${CHILD_STEPS}`]);
  assert.ok(!existsSync(join(runDir, LOCK_FILE)));
});

test('two writers on one run folder: the second is refused with the holder named', async () => {
  const runDir = fresh('two');
  const go = join(runDir, 'go');
  let second: Promise<ChildRun> | undefined;
  // The first writer waits after its first step until the second has been refused.
  const first = runChild([runDir, '--wait-for', go], undefined, (line) => {
    if (line === 'step 1') second ??= runChild([runDir]).finally(() => writeFileSync(go, ''));
  });
  const a = await first;
  const b = await second!;
  assert.equal(a.code, 0, a.stderr);
  assert.notEqual(b.code, 0);
  assert.match(b.stderr, new RegExp(`is in use by PID \\d+ on ${hostname()} \\(train`));
  assert.equal(readCheckpointMeta(runDir).step, CHILD_STEPS);
});

test('lock: atomic, re-entrant in one process, stale lock taken over, other host refused', () => {
  const runDir = fresh('lock');
  const lock = acquireRunLock(runDir, 'train');
  const again = acquireRunLock(runDir, 'eval'); // same process: re-entrant
  again.release();
  assert.ok(existsSync(join(runDir, LOCK_FILE)));
  lock.release();
  assert.ok(!existsSync(join(runDir, LOCK_FILE)));
  // A lock left by a process that is gone (its PID exited) is taken over, with a message.
  const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)']).stdout.toString().trim();
  const stale = { pid: Number(dead), host: hostname(), command: 'train', since: 'then', token: 'x' };
  writeFileSync(join(runDir, LOCK_FILE), JSON.stringify(stale));
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => warnings.push(m);
  try {
    acquireRunLock(runDir, 'train').release();
  } finally {
    console.warn = warn;
  }
  assert.match(warnings.join('\n'), new RegExp(`taking over the lock .*PID ${dead} .*is no longer running`));
  // A writer's clean-up never deletes the temporary file another process is about to link as the
  // lock (that race let two writers start); orphans of dead processes go at the next acquire.
  const pending = lockTmpName(join(runDir, LOCK_FILE));
  const orphan = join(runDir, `${LOCK_FILE}.pid-${dead}-0123abcd`);
  writeFileSync(pending, '{}');
  writeFileSync(orphan, '{}');
  assert.deepEqual(removeStale(runDir), []);
  acquireRunLock(runDir, 'train').release();
  assert.ok(existsSync(pending) && !existsSync(orphan));
  // Another host's lock cannot be checked: refused, with what to do.
  writeFileSync(join(runDir, LOCK_FILE), JSON.stringify({ ...stale, host: 'elsewhere' }));
  assert.throws(() => acquireRunLock(runDir, 'train'), /in use by PID \d+ on elsewhere .*delete .*run\.lock/);
});

const tinyConfig = (over: object = {}) =>
  resolveTrainConfig({
    steps: 6,
    batchSize: 16,
    gAcc: 2,
    seed: 3,
    warmupSteps: 1,
    checkpointEvery: 1,
    optimizer: { kind: 'sgd', lr: 0.05 },
    ...over,
  });

test('divergence: a non-finite loss stops training, the last good checkpoint stays finite and loadable', async () => {
  const runDir = fresh('nan');
  const model = new Mlp({ inputs: 784, hidden: [16, 16], classes: 10 }, 2);
  const grid = new Grid({ depth: [1, 2] }, model);
  // Enormous learning rate: finite at first, then the weights explode.
  const config = tinyConfig({ steps: 30, optimizer: { kind: 'sgd', lr: 1e6, momentum: 0.9 } });
  const warn = console.warn;
  console.warn = () => {};
  let err: unknown;
  try {
    await trainRun(runDir, model, grid, data, config);
  } catch (e) {
    err = e;
  } finally {
    console.warn = warn;
  }
  assert.ok(err instanceof DivergenceError, `expected a DivergenceError, got ${err}`);
  assert.match((err as Error).message, /^step \d+: the (loss is|weights are)/);
  assert.match((err as Error).message, /The last checkpoint, .*step-0000\d\d, is intact/);
  const ck = await loadCheckpoint(runDir);
  assert.ok(ck.meta.step < 30);
  for (const [name, v] of ck.model.namedParameters()) {
    assert.ok(v.dataSync().every(Number.isFinite), `${name} is not finite in the last checkpoint`);
  }
  // With nonFinite: 'skip' the bad updates are skipped, and a run that never recovers still stops.
  const skipped: number[] = [];
  const model2 = new Mlp({ inputs: 784, hidden: [16, 16], classes: 10 }, 2);
  console.warn = () => {};
  try {
    await assert.rejects(
      train(
        model2,
        grid,
        data,
        { ...config, nonFinite: 'skip' },
        { onStep: (s) => s.skipped && skipped.push(s.step) },
      ),
      /in a row/,
    );
  } finally {
    console.warn = warn;
  }
  assert.equal(skipped.length, MAX_CONSECUTIVE_SKIPS);
});

test('eval between a kill and --resume: resume is still exact (eval never rewrites weights or optimizer state)', async () => {
  const cfg = tinyResNet();
  const config = tinyConfig({ optimizer: { kind: 'adamw', lr: 0.01 }, checkpointEvery: 3 });
  const dirA = fresh('eval-a');
  const dirB = fresh('eval-b');
  const a = new ResNet(cfg, 2);
  const grid = new Grid({ depth: [2], width: [0.5, 1] }, a);
  await trainRun(dirA, a, grid, data, config);
  await trainRun(dirB, new ResNet(cfg, 2), grid, data, config, { stopAfter: 3 });
  // What `sortednet eval` does: load, recalibrate BN per sub-model, keep the statistics.
  const { model } = await loadCheckpoint(dirB);
  const test = subset(loadMnist().test, 64, 2);
  evaluateGrid(model, new Grid(grid.spec, model), data, test, { calibrationBatches: 2, latencyReps: 1 });
  const calibrated = saveCalibration(dirB, model);
  assert.ok(existsSync(calibrated));
  // Inference loads the calibrated statistics; resuming does not.
  const statsOf = async (calibrated: boolean) =>
    namedBatchNorms((await loadCheckpoint(dirB, undefined, { calibrated })).model)[0][1].statsKeys().length;
  assert.equal(await statsOf(true), grid.size);
  assert.equal(await statsOf(false), 0);
  await trainRun(dirB, new ResNet(cfg, 2), grid, data, config, { resume: true });
  assert.deepEqual(finalFiles(dirB), finalFiles(dirA));
});

test('malformed checkpoint files: errors name the file and what is wrong', async () => {
  const runDir = fresh('bad');
  const model = new Mlp({ inputs: 4, hidden: [3], classes: 2 }, 1);
  const optimizerState = new Map([['layers.0.weight.m', tf.zeros([3, 4])]]);
  saveCheckpoint(runDir, { model, grid: {}, step: 1, seed: 1, optimizerState });
  // Unsealed, as a run saved before seals: the checks behind the seal (test/checkpoint_integrity) are tested here.
  writeFileSync(join(runDir, 'checkpoints', 'latest'), 'step-000001\n');
  const dir = checkpointDir(runDir);
  const original = new Map(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));
  /** Replaces one file and re-hashes it in checkpoint.json, so that only the content is wrong. */
  const replace = (file: string, bytes: Uint8Array) => {
    for (const [f, b] of original) writeFileSync(join(dir, f), b);
    writeFileSync(join(dir, file), bytes);
    const meta = JSON.parse(original.get('checkpoint.json')!.toString());
    meta.files[file] = sha256Hex(bytes);
    writeFileSync(join(dir, 'checkpoint.json'), JSON.stringify(meta));
  };
  const weights = decodeSafetensors(original.get('model.safetensors')!);
  const asI32 = new Map(
    [...weights.tensors].map(([n, t]) => [n, { ...t, dtype: 'I32' as const, data: Int32Array.from(t.data) }]),
  );
  replace('model.safetensors', encodeSafetensors(asI32));
  await assert.rejects(
    loadCheckpoint(runDir),
    /model\.safetensors: parameter 'layers\.0\.\w+' is int32, the model's is float32/,
  );

  const nullHeader = new Uint8Array(16);
  new DataView(nullHeader.buffer).setBigUint64(0, 8n, true);
  nullHeader.set(Buffer.from('null    '), 8);
  replace('model.safetensors', nullHeader);
  await assert.rejects(
    loadCheckpoint(runDir),
    /model\.safetensors: the header is null, not an object of tensors/,
  );

  replace(
    'optimizer.safetensors',
    encodeSafetensors(
      new Map([['layers.0.weight.m', { dtype: 'F32', shape: [3], data: new Float32Array(3) }]]),
    ),
  );
  await assert.rejects(
    loadCheckpoint(runDir),
    /optimizer\.safetensors: 'layers\.0\.weight\.m' has shape \[3\], its parameter has \[3,4\]/,
  );

  for (const [f, b] of original) writeFileSync(join(dir, f), b);
  writeFileSync(join(dir, 'checkpoint.json'), 'null');
  await assert.rejects(
    loadCheckpoint(runDir),
    /checkpoint .*step-000001.checkpoint\.json: expected a JSON object, found null/,
  );
  writeFileSync(
    join(dir, 'checkpoint.json'),
    JSON.stringify({ ...JSON.parse(original.get('checkpoint.json')!.toString()), files: { '../x': 'ab' } }),
  );
  await assert.rejects(loadCheckpoint(runDir), /files entry "\.\.\/x"/);
});

test('interrupted saves: latest missing or pointing nowhere falls back with a message; stale temporaries are removed', async () => {
  const runDir = fresh('fallback');
  const model = new Mlp({ inputs: 4, hidden: [3], classes: 2 }, 1);
  for (const step of [1, 2, 3]) saveCheckpoint(runDir, { model, grid: {}, step, seed: 1 }, { keep: 3 });
  const root = join(runDir, 'checkpoints');
  assert.deepEqual(readdirSync(root).sort(), ['latest', 'step-000001', 'step-000002', 'step-000003']);
  saveCheckpoint(runDir, { model, grid: {}, step: 4, seed: 1 });
  assert.deepEqual(readdirSync(root).sort(), ['latest', 'step-000003', 'step-000004']);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => warnings.push(m);
  try {
    writeFileSync(join(root, 'latest'), 'step-000009\n');
    assert.equal(checkpointDir(runDir), join(root, 'step-000004'));
    writeFileSync(join(root, 'latest'), 'step-000003\n');
    assert.equal(checkpointDir(runDir), join(root, 'step-000003'));
  } finally {
    console.warn = warn;
  }
  assert.match(
    warnings.join('\n'),
    /names step-000009, which is missing or incomplete; using the newest complete checkpoint, step-000004/,
  );
  assert.match(
    warnings.join('\n'),
    /step-000004 newer than 'latest' \(step-000003\) were left by an interrupted save/,
  );
  // The current checkpoint is never overwritten; leftovers of interrupted writes go at the next start.
  assert.throws(
    () => saveCheckpoint(runDir, { model, grid: {}, step: 3, seed: 1 }),
    /already holds the current checkpoint/,
  );
  const fresh2 = join(runDir, 'fresh');
  const mlp784 = () => new Mlp({ inputs: 784, hidden: [8], classes: 10 }, 1);
  const grid = new Grid({}, mlp784());
  await trainRun(fresh2, mlp784(), grid, data, tinyConfig({ steps: 1 }));
  mkdirSync(join(fresh2, 'checkpoints', 'step-000002.tmp-0badc0de'));
  mkdirSync(join(fresh2, 'checkpoints', 'step-000006')); // no checkpoint.json: incomplete
  writeFileSync(join(fresh2, 'run.json.tmp-12ab'), '{');
  const removed: string[] = [];
  console.warn = (m: string) => removed.push(m);
  try {
    await trainRun(fresh2, mlp784(), grid, data, tinyConfig({ steps: 2 }), { resume: true });
  } finally {
    console.warn = warn;
  }
  assert.equal(removed.filter((m) => /^removed .* \(left by an interrupted write\)$/.test(m)).length, 3);
  assert.deepEqual(readdirSync(join(fresh2, 'checkpoints')).sort(), ['latest', 'step-000001', 'step-000002']);
  assert.ok(!existsSync(join(fresh2, 'run.json.tmp-12ab')));
});

test('resume: changed settings are refused, more steps are honoured; the log is cut back to the resumed step', async () => {
  const runDir = fresh('flags');
  const model = new Mlp({ inputs: 784, hidden: [8], classes: 10 }, 1);
  const grid = new Grid({}, model);
  await trainRun(runDir, model, grid, data, tinyConfig({ steps: 2 }));
  await assert.rejects(
    trainRun(runDir, model, grid, data, tinyConfig({ steps: 4, batchSize: 8 }), { resume: true }),
    /cannot resume .* with different settings: batchSize 16 → 8/,
  );
  await assert.rejects(
    trainRun(runDir, model, grid, data, tinyConfig({ steps: 1 }), { resume: true }),
    /at step 2, beyond the 1 steps/,
  );
  const r = await trainRun(runDir, model, grid, data, tinyConfig({ steps: 4 }), { resume: true });
  assert.equal(r.steps, 2);
  assert.equal(readCheckpointMeta(runDir).step, 4);

  const log = join(runDir, 'log.jsonl');
  writeFileSync(
    log,
    '{"step":1}\n{"event":"resumed"}\n{"step":2}\n{"step":3}\n{"event":"done"}\n{"step":4}\n{"step": 5, "lo',
  );
  truncateLog(log, 2);
  assert.equal(readFileSync(log, 'utf8'), '{"step":1}\n{"event":"resumed"}\n{"step":2}\n');
  writeFileSync(log, '{"step":1}\n{"step":2}\n{"step": 3, "lo');
  truncateLog(log, 3);
  assert.equal(readFileSync(log, 'utf8'), '{"step":1}\n{"step":2}\n');
});

test('seeds: every safe integer gives its own stream per step; unrepresentable seeds are refused', () => {
  const model = new Mlp({ inputs: 4, hidden: [8, 8, 8], classes: 2 }, 1);
  const grid = new Grid({ depth: [1, 2, 3], width: [0.25, 0.5, 0.75, 1] }, model);
  const config = resolveTrainConfig({ seed: 1e15, gAcc: 2 });
  const drawn = new Set<string>();
  for (let step = 0; step < 40; step++) {
    const stepRng = createRng(streamSeed(config.seed, 7919, step));
    for (const e of planStep(config, grid, new SubModelSampler(grid, {}, () => stepRng.next())))
      drawn.add(e.id);
  }
  assert.equal(
    drawn.size,
    grid.size,
    `seed 1e15 trained ${drawn.size} of ${grid.size} sub-models in 40 steps`,
  );
  // Small seeds keep their streams (earlier runs repeat); large ones use both halves.
  assert.equal(seed32(42), 42);
  assert.notEqual(seed32(2 ** 40), seed32(2 ** 41));
  assert.notEqual(seed32(2 ** 32 + 5), 5);
  assert.throws(
    () => resolveTrainConfig({ seed: 1e20 }),
    /seed 100000000000000000000 cannot be represented exactly/,
  );
  assert.throws(() => createRng(0.5), /not a usable seed/);
});

test('data guards: one class, and a non-finite input, are refused before the first step', async () => {
  const model = new Mlp({ inputs: 784, hidden: [8], classes: 10 }, 1);
  const grid = new Grid({}, model);
  await assert.rejects(
    train(model, grid, { ...data, numClasses: 1 }, tinyConfig()),
    /has 1 class\(es\); a classifier needs at least two/,
  );
  const images = data.images.slice();
  images[5 * 784 + 30] = Infinity;
  await assert.rejects(
    train(model, grid, { ...data, images }, tinyConfig()),
    /sample 5, value 30 \(row 1, column 2, channel 0\) is Infinity/,
  );
});
