/**
 * `--strategy individual` end to end: each sub-model a run of its own (DIR/sub-<id>) with
 * checkpoints, `eval`/`pick`/`extract`/`predict` on the individual run, and `--resume` that skips
 * finished sub-models and continues an interrupted one from its checkpoint.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { checkpointDir, readCheckpointMeta } from '../src/io/checkpoint.js';
import { sha256Hex } from '../src/io/sha256.js';
import { cli } from './deploy_fixture.js';

let dir: string;
let run: string;
const IDS = ['width=0.5', 'width=1'];
const sub = (r: string, id: string) => join(r, `sub-${id}`);
const evalRows = (r: string) =>
  JSON.parse(readFileSync(join(r, 'eval.json'), 'utf8')) as {
    id: string;
    accuracy: number;
    params: number;
  }[];
const hashes = (r: string) =>
  ['model.safetensors', 'optimizer.safetensors'].map((f) =>
    sha256Hex(readFileSync(join(checkpointDir(r), f))),
  );

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sortednet-individual-'));
  run = join(dir, 'run');
  const cfg = join(dir, 'c.json');
  // An MLP on MNIST with a two-entry grid: two standalone models, 4 steps each.
  writeFileSync(
    cfg,
    JSON.stringify({
      model: 'mlp',
      data: { name: 'mnist', trainSubset: 128, testSubset: 64 },
      grid: { width: [0.5, 1] },
      eval: { calibrationBatches: 2, latencyReps: 1 },
    }),
  );
  const r = await cli([
    'train', '--run', run, '--config', cfg, '--strategy', 'individual',
    '--steps', '4', '--batch-size', '16', '--checkpoint-every', '2',
  ]); // prettier-ignore
  assert.equal(r.code, 0);
  assert.match(r.out, /4 steps × gAcc 1 × batch 16 = 64 samples each/);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('individual: one standalone run per sub-model, with checkpoints; the budget in the log', () => {
  for (const id of IDS) {
    const meta = readCheckpointMeta(sub(run, id));
    assert.equal(meta.step, 4, id);
    assert.deepEqual(meta.grid, { width: [Number(id.split('=')[1])] }, `${id}: a one-entry grid`);
    assert.equal(meta.train?.gAcc, 1, `${id}: one micro-batch per step by default`);
    assert.ok(existsSync(join(sub(run, id), 'run.json')), id);
    assert.ok(existsSync(join(sub(run, id), 'eval.json')), id);
  }
  assert.deepEqual(
    evalRows(run).map((r) => r.id),
    IDS,
  );
  const budget = JSON.parse(readFileSync(join(run, 'log.jsonl'), 'utf8').split('\n')[0]);
  assert.deepEqual(budget, {
    event: 'budget',
    subModels: 2,
    steps: 4,
    gAcc: 1,
    batchSize: 16,
    samplesPerSubModel: 64,
  });
});

test('individual: eval and pick work on the run', async () => {
  const before = evalRows(run);
  rmSync(join(run, 'eval.json'));
  assert.equal((await cli(['eval', '--run', run])).code, 0);
  const rows = evalRows(run);
  assert.deepEqual(
    rows.map((r) => [r.id, r.accuracy]),
    before.map((r) => [r.id, r.accuracy]),
  );
  const picked = await cli(['pick', '--run', run, '--max-params', String(rows[0].params)]);
  assert.equal(JSON.parse(picked.out).id, 'width=0.5');
});

test('individual: extract and predict take --sub on the run and find its stored model', async () => {
  const out = join(dir, 'small');
  const r = await cli(['extract', '--run', run, '--sub', 'width=0.5', '--out', out]);
  assert.equal(r.code, 0);
  assert.match(r.out, new RegExp(`extracted width=0.5: ${evalRows(run)[0].params} parameters`));
  assert.equal(readCheckpointMeta(out).step, 4);
  const png = new PNG({ width: 28, height: 28 });
  png.data.fill(255);
  const pngPath = join(dir, 'white.png');
  writeFileSync(pngPath, PNG.sync.write(png));
  const p = await cli(['predict', '--run', run, '--sub', 'width=1', '--input', pngPath, '--json']);
  assert.equal(JSON.parse(p.out)[0].subModel, 'width=1');
  // 'full' is the grid's largest model here too, as in a sorted run.
  const full = await cli(['predict', '--run', run, '--sub', 'full', '--input', pngPath, '--json']);
  assert.equal(JSON.parse(full.out)[0].subModel, 'width=1');
  await assert.rejects(
    cli(['predict', '--run', run, '--input', pngPath]),
    /is an individual run: each sub-model is a model of its own.*--sub ID/,
  );
  await assert.rejects(
    cli(['extract', '--run', run, '--sub', 'width=0.75', '--out', join(dir, 'none')]),
    /sub-width=0.75 holds no checkpoint: sub-model width=0.75 of the individual run/,
  );
});

test('individual: --resume skips finished sub-models and continues an interrupted one', async () => {
  // b: the run killed while training width=1 (its checkpoint at step 2, its log at step 3).
  const b = join(dir, 'killed');
  cpSync(run, b, { recursive: true });
  const w1 = sub(b, 'width=1');
  rmSync(join(w1, 'checkpoints', 'step-000004'), { recursive: true });
  writeFileSync(join(w1, 'checkpoints', 'latest'), 'step-000002\n');
  const log = readFileSync(join(w1, 'log.jsonl'), 'utf8').split('\n');
  writeFileSync(join(w1, 'log.jsonl'), log.slice(0, 3).join('\n') + '\n');
  for (const f of [join(w1, 'eval.json'), join(b, 'eval.json')]) rmSync(f);
  const done = join(checkpointDir(sub(b, 'width=0.5')), 'model.safetensors');
  const doneTime = statSync(done).mtimeMs;

  await assert.rejects(
    cli(['train', '--run', b, '--steps', '4']),
    /already holds a checkpoint; use --resume/,
  );
  const r = await cli(['train', '--run', b, '--resume']);
  assert.equal(r.code, 0);
  assert.match(r.out, /width=0.5: already trained \(step 4 of 4\), skipped/);
  assert.match(r.out, /width=1: resuming at step 2 of 4/);
  assert.equal(statSync(done).mtimeMs, doneTime, 'the finished sub-model is not trained again');
  // Continued, not restarted: the same weights as the uninterrupted run, each step logged once.
  assert.deepEqual(hashes(w1), hashes(sub(run, 'width=1')));
  const steps = readFileSync(join(w1, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).step);
  assert.deepEqual(steps, [1, 2, 3, 4]);
  assert.deepEqual(
    evalRows(b).map((x) => x.id),
    IDS,
  );
  // More steps on --resume continue every sub-model.
  assert.equal((await cli(['train', '--run', b, '--resume', '--steps', '5', '--no-eval'])).code, 0);
  for (const id of IDS) {
    assert.equal(readCheckpointMeta(sub(b, id)).step, 5, id);
    // The 4-step evaluation is gone, so that no later resume reports it as the 5-step model's.
    assert.ok(!existsSync(join(sub(b, id), 'eval.json')), id);
  }
});
