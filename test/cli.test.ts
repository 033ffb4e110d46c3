/** The command line end to end on a tiny run: train, eval, pick, extract (equivalence), bad input. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { main } from '../src/cli/main.js';
import { quiet } from './cli_helpers.js';
import { checkpointDir, loadCheckpoint, readCheckpointMeta } from '../src/io/checkpoint.js';
import { sha256Hex } from '../src/io/sha256.js';
import { parseSubModel, FULL } from '../src/sorted/submodel.js';
import { loadMnist } from '../src/data/mnist.js';
import { assertClose } from './helpers.js';

let dir: string;

/** A tiny run's flags (resnet-small on MNIST by default); `extra` adds or overrides (the last value wins). */
const tiny = (run: string, ...extra: string[]) => [
  'train',
  '--run',
  run,
  '--steps',
  '6',
  '--batch-size',
  '16',
  '--gacc',
  '2',
  '--train-subset',
  '256',
  '--test-subset',
  '64',
  ...extra,
];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sortednet-cli-'));
  const code = await quiet(
    tiny(join(dir, 'run'), '--model', 'resnet-small', '--data', 'mnist', '--steps', '3'),
  );
  assert.equal(code, 0);
});

test('train writes checkpoint, log, eval table and plot', () => {
  for (const f of [
    'checkpoints/latest',
    'checkpoints/step-000003/checkpoint.json',
    'checkpoints/step-000003/model.safetensors',
    'checkpoints/step-000003/bn_stats.safetensors',
    'checkpoints/step-000003/optimizer.safetensors',
    'checkpoints/step-000003/bn_calibrated.safetensors',
    'log.jsonl',
    'eval.json',
    'eval.csv',
    'plot.svg',
  ]) {
    assert.ok(existsSync(join(dir, 'run', f)), `${f} missing`);
  }
  const rows = JSON.parse(readFileSync(join(dir, 'run', 'eval.json'), 'utf8'));
  assert.equal(rows.length, 16);
  const log = readFileSync(join(dir, 'run', 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(log.filter((l) => l.step).length, 3);
  assert.match(readFileSync(join(dir, 'run', 'plot.svg'), 'utf8'), /^<svg/);
});

test('extract: the standalone model equals the sub-model inside the shared network (BN stats included)', async () => {
  const out = join(dir, 'small');
  assert.equal(
    await quiet(['extract', '--run', join(dir, 'run'), '--sub', 'depth=4,width=0.5', '--out', out]),
    0,
  );
  const shared = (await loadCheckpoint(join(dir, 'run'))).model;
  const small = (await loadCheckpoint(out)).model;
  assert.ok(small.parameterCount() < shared.parameterCount() / 2);
  const x = tf.tensor4d(loadMnist().test.images.subarray(0, 8 * 784), [8, 28, 28, 1]);
  const sub = parseSubModel('depth=4,width=0.5');
  assertClose(
    shared.forward(x, sub, { mode: 'eval', key: 'depth=4,width=0.5' }),
    small.forward(x, FULL, { mode: 'eval', key: 'full' }),
    1e-5,
    'extracted',
  );
  await assert.rejects(
    quiet(['extract', '--run', join(dir, 'run'), '--sub', 'depth=4,width=0.5', '--out', out]),
    /already holds a checkpoint/,
  );
});

test('pick reads eval.json and answers without search', async () => {
  const rows = JSON.parse(readFileSync(join(dir, 'run', 'eval.json'), 'utf8')) as { flops: number }[];
  const mid = [...rows].sort((a, b) => a.flops - b.flops)[8].flops;
  const lines: string[] = [];
  const log = console.log;
  console.log = (s: string) => lines.push(s);
  try {
    assert.equal(await main(['pick', '--run', join(dir, 'run'), '--max-flops', String(mid)]), 0);
  } finally {
    console.log = log;
  }
  assert.ok(JSON.parse(lines[0]).flops <= mid);
});

test('bad input: clear errors, nothing overwritten', async () => {
  await assert.rejects(main(['fly']), /unknown command 'fly'/);
  await assert.rejects(
    main(['train', '--run', join(dir, 'x'), '--steps', 'ten']),
    /--steps <n>' argument 'ten' is invalid\. 'ten' is not an integer/,
  );
  await assert.rejects(
    main(['train', '--run', join(dir, 'x'), '--bogus']),
    /unknown option '--bogus'; known options of 'train': --run/,
  );
  await assert.rejects(
    main(['train', '--run', join(dir, 'run'), '--steps', '1']),
    /already holds a checkpoint; use --resume/,
  );
  await assert.rejects(main(['pick', '--run', join(dir, 'run')]), /give a budget/);
  await assert.rejects(
    main(['extract', '--run', join(dir, 'run'), '--sub', 'width=2', '--out', join(dir, 'y')]),
    /width=2 must be a fraction/,
  );
  await assert.rejects(
    main(['train', '--run', join(dir, 'z'), '--model', 'nope']),
    /unknown model preset 'nope'/,
  );
  await assert.rejects(main(['train', '--run', join(dir, 'z'), '--data', 'cifar']), /cifar/);
  const cfg = join(dir, 'bad.json');
  writeFileSync(cfg, '{"trian": {}}');
  await assert.rejects(main(['train', '--run', join(dir, 'z'), '--config', cfg]), /unknown field 'trian'/);
  assert.ok(existsSync(join(dir, 'run', 'checkpoints', 'step-000003', 'checkpoint.json')));
});

test("`<command> --help` prints that command's options and runs nothing; --version", async () => {
  const printed: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    printed.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    assert.equal(await main(['lm', '--help', '--run', join(dir, 'lm-help')]), 0);
    assert.equal(await main(['train', '-h']), 0);
    assert.equal(await main(['--version']), 0);
  } finally {
    process.stdout.write = write;
  }
  const text = printed.join('');
  assert.match(text, /Usage: sortednet lm/);
  assert.match(text, /--batch-size <n>/);
  assert.match(text, /^\d+\.\d+\.\d+$/m);
  assert.ok(!existsSync(join(dir, 'lm-help')), 'no run folder was made');
});

const hashes = (stepDir: string) =>
  ['model.safetensors', 'bn_stats.safetensors', 'optimizer.safetensors'].map((f) =>
    sha256Hex(readFileSync(join(stepDir, f))),
  );

test('eval between a kill and --resume: the resumed run equals the uninterrupted one; the log has each step once', async () => {
  const a = join(dir, 'whole');
  const b = join(dir, 'killed');
  const cfg = join(dir, 'ck3.json');
  writeFileSync(cfg, JSON.stringify({ eval: { calibrationBatches: 2, latencyReps: 1 } }));
  assert.equal(await quiet(tiny(a, '--checkpoint-every', '3', '--keep-checkpoints', '3', '--no-eval')), 0);
  // b: the same run killed after step 5 (checkpoint at 3, log up to 5), then evaluated.
  mkdirSync(join(b, 'checkpoints'), { recursive: true });
  cpSync(join(a, 'checkpoints', 'step-000003'), join(b, 'checkpoints', 'step-000003'), { recursive: true });
  writeFileSync(join(b, 'checkpoints', 'latest'), 'step-000003\n');
  const run = JSON.parse(readFileSync(join(a, 'run.json'), 'utf8'));
  writeFileSync(
    join(b, 'run.json'),
    JSON.stringify({ ...run, eval: { calibrationBatches: 2, latencyReps: 1 } }),
  );
  const log = readFileSync(join(a, 'log.jsonl'), 'utf8').split('\n');
  writeFileSync(join(b, 'log.jsonl'), log.slice(0, 5).join('\n') + '\n{"step":6,"lo');
  assert.equal(await quiet(['eval', '--run', b]), 0);
  assert.ok(existsSync(join(b, 'checkpoints', 'step-000003', 'bn_calibrated.safetensors')));
  assert.deepEqual(
    hashes(join(b, 'checkpoints', 'step-000003')),
    hashes(join(a, 'checkpoints', 'step-000003')),
  );
  assert.equal(await quiet(['train', '--run', b, '--resume', '--no-eval']), 0);
  assert.deepEqual(hashes(checkpointDir(b)), hashes(checkpointDir(a)));
  const steps = readFileSync(join(b, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).step)
    .filter((s) => s !== undefined);
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);
  // Changed settings of the run itself are refused, naming the old and the new value.
  await assert.rejects(
    quiet(['train', '--run', b, '--resume', '--lr', '0.1', '--seed', '2', '--batch-size', '16']),
    /--resume continues the run as it was set up; --lr 0\.1 \(the run has 0\.003\), --seed 2 \(the run has 1\) cannot change/,
  );
  // The command the run was started with, --resume appended, is the same run: accepted (and more steps honoured).
  assert.equal(await quiet([...tiny(b, '--steps', '7', '--no-eval'), '--resume']), 0);
  assert.equal(readCheckpointMeta(b).step, 7);
});

test('divergence: --lr 1e6 stops with exit code 3 and the last good checkpoint intact', async () => {
  const run = join(dir, 'nan');
  const errors: string[] = [];
  const error = console.error;
  const warn = console.warn;
  console.error = (m: string) => errors.push(m);
  console.warn = () => {};
  try {
    assert.equal(await quiet(tiny(run, '--steps', '20', '--lr', '1e6', '--checkpoint-every', '1')), 3);
  } finally {
    console.error = error;
    console.warn = warn;
  }
  assert.match(
    errors.join('\n'),
    /step \d+: the loss is \S+ and the gradient norm (NaN|Infinity); training stopped without applying the update\..* The last checkpoint, .*, is intact/,
  );
  const ck = await loadCheckpoint(run);
  assert.ok(ck.meta.step >= 1 && ck.meta.step < 20);
  for (const [name, v] of ck.model.namedParameters()) assert.ok(v.dataSync().every(Number.isFinite), name);
});

test('one writer per run folder: a live holder refuses train and eval', async () => {
  const holder = spawn('sleep', ['30']);
  try {
    const run = join(dir, 'run');
    writeFileSync(
      join(run, 'run.lock'),
      JSON.stringify({ pid: holder.pid, host: hostname(), command: 'train', since: 'now', token: 't' }),
    );
    await assert.rejects(
      quiet(['eval', '--run', run]),
      new RegExp(`in use by PID ${holder.pid} on ${hostname()}`),
    );
    await assert.rejects(quiet(['train', '--run', run, '--resume']), /in use by PID/);
    rmSync(join(run, 'run.lock'));
  } finally {
    holder.kill();
  }
});

test('bad reliability input: subset 0, unrepresentable seed, latencyReps 0, --out over a file', async () => {
  await assert.rejects(main(tiny(join(dir, 'q'), '--train-subset', '0')), /'0' must be at least 1/);
  await assert.rejects(main(tiny(join(dir, 'q'), '--seed', '1e20')), /cannot be represented exactly/);
  const cfg = join(dir, 'reps.json');
  writeFileSync(cfg, JSON.stringify({ eval: { latencyReps: 0 } }));
  await assert.rejects(
    main(tiny(join(dir, 'q'), '--config', cfg)),
    /reps\.json: eval\.latencyReps: must be a positive integer, got 0/,
  );
  assert.ok(!existsSync(join(dir, 'q')), 'a failed start leaves no folder');
  const svg = join(dir, 'cmp.svg');
  writeFileSync(svg, 'mine');
  await assert.rejects(
    main(['compare', '--runs', join(dir, 'run'), '--out', svg]),
    /cmp\.svg exists; .*--force/,
  );
  assert.equal(readFileSync(svg, 'utf8'), 'mine');
  assert.equal(await quiet(['compare', '--runs', join(dir, 'run'), '--out', svg, '--force']), 0);
  assert.match(readFileSync(svg, 'utf8'), /^<svg/);
  await assert.rejects(main(['compare', '--runs', ',']), /names no run folder/);
});
