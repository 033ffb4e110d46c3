/** The command line end to end on a tiny run: train, eval, pick, extract (equivalence), bad input. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { main } from '../src/cli/main.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { parseSubModel, FULL } from '../src/sorted/submodel.js';
import { loadMnist } from '../src/data/mnist.js';
import { assertClose } from './helpers.js';

let dir: string;
const quiet = async (args: string[]) => {
  const log = console.log;
  console.log = () => {};
  try {
    return await main(args);
  } finally {
    console.log = log;
  }
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sortednet-cli-'));
  const code = await quiet([
    'train',
    '--run',
    join(dir, 'run'),
    '--model',
    'resnet-small',
    '--data',
    'mnist',
    '--steps',
    '3',
    '--batch-size',
    '16',
    '--gacc',
    '2',
    '--train-subset',
    '256',
    '--test-subset',
    '64',
  ]);
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
