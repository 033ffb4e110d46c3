/** The command line on a PAD ResNet: train → checkpoint → partition → compact → load → equal outputs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { ForwardContext } from '../src/nn/module.js';
import { padLayers } from '../src/dynamic/partial.js';
import { padResNetConfig } from '../src/models/pad_resnet.js';
import { FULL } from '../src/sorted/submodel.js';
import { checkpointDir, loadCheckpoint } from '../src/io/checkpoint.js';
import { main } from '../src/cli/main.js';
import { assertClose } from './helpers.js';

const evalCtx: ForwardContext = { mode: 'eval', key: 'full' };

/** Runs the command line with its console output silenced; resolves to the exit code. */
async function quiet(args: string[]): Promise<number> {
  const log = console.log;
  console.log = () => {};
  try {
    return await main(args);
  } finally {
    console.log = log;
  }
}

test('CLI: train a PAD ResNet → checkpoint → partition → compact → load → equal outputs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sortednet-pad-'));
  const run = join(dir, 'run');
  // A small PAD ResNet with a depth × width grid, as a JSON model spec.
  const config = join(dir, 'config.json');
  const model = padResNetConfig({
    inChannels: 1,
    imageSize: 28,
    classes: 10,
    stem: 4,
    widths: [4, 8],
    blocks: [1, 2],
    kernels: 3,
  });
  writeFileSync(
    config,
    JSON.stringify({
      model: { family: 'pad-resnet', config: model },
      grid: { depth: [2, 3], width: [0.5, 1] },
    }),
  );
  const common = ['--train-subset', '64', '--test-subset', '16', '--batch-size', '16'];
  assert.equal(
    await quiet([
      'train',
      '--run',
      run,
      '--config',
      config,
      '--data',
      'mnist',
      '--steps',
      '2',
      '--gacc',
      '2',
      '--no-eval',
      ...common,
    ]),
    0,
  );
  assert.ok(existsSync(join(checkpointDir(run), 'buffers.safetensors')), 'PAD masks are saved as buffers');
  const part = join(dir, 'part');
  assert.equal(
    await quiet([
      'partition',
      '--run',
      run,
      '--kappa',
      '0.3',
      '--out',
      part,
      '--calibration',
      '2',
      '--batch-size',
      '16',
    ]),
    0,
  );
  const record = JSON.parse(readFileSync(join(part, 'partition.json'), 'utf8'));
  assert.equal(record.kept, Math.round(0.3 * record.total));
  const deployed = join(dir, 'deployed');
  assert.equal(await quiet(['compact', '--run', part, '--out', deployed]), 0);

  const masked = await loadCheckpoint(part);
  const compact = await loadCheckpoint(deployed);
  assert.equal(compact.meta.model.family, 'pad-resnet');
  const keptNow = padLayers(masked.model).reduce(
    (a, l) => a + tf.tidy(() => tf.sum(l.masks[0]).dataSync()[0]),
    0,
  );
  assert.equal(keptNow, record.kept, 'the masks came back from the checkpoint');
  assert.ok(compact.model.parameterCount() < masked.model.parameterCount());
  const x = tf.randomNormal([8, 28, 28, 1], 0, 1, 'float32', 5);
  tf.tidy(() =>
    assertClose(
      compact.model.forward(x, FULL, evalCtx),
      masked.model.forward(x, FULL, evalCtx),
      1e-5,
      'deployed checkpoint vs partitioned checkpoint',
    ),
  );
  // Bad input: κ out of range; compacting a run that has no PAD layers is refused by name.
  await assert.rejects(quiet(['partition', '--run', run, '--kappa', '1.5']), /kappa 1.5 must be in \(0, 1\]/);
  masked.model.dispose();
  compact.model.dispose();
  x.dispose();
});

test('CLI: a PAD-MoE transformer on SpamAssassin trains, evaluates, partitions, compacts, extracts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sortednet-moe-'));
  const run = join(dir, 'run');
  const args = ['--model', 'moe-transformer', '--data', 'spamassassin', '--steps', '2', '--gacc', '1'];
  const sizes = ['--batch-size', '8', '--train-subset', '32', '--test-subset', '16'];
  assert.equal(await quiet(['train', '--run', run, ...args, ...sizes]), 0);
  const rows = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8'));
  assert.equal(rows.length, 1);
  assert.ok(rows[0].accuracy >= 0 && rows[0].params > 0);
  const part = join(dir, 'part');
  assert.equal(
    await quiet([
      'partition',
      '--run',
      run,
      '--kappa',
      '0.5',
      '--out',
      part,
      '--calibration',
      '2',
      '--batch-size',
      '8',
    ]),
    0,
  );
  const deployed = join(dir, 'deployed');
  assert.equal(await quiet(['compact', '--run', part, '--out', deployed]), 0);
  const masked = await loadCheckpoint(part);
  const compact = await loadCheckpoint(deployed);
  assert.ok(compact.model.parameterCount() < masked.model.parameterCount());
  const ids = tf.tensor2d(
    Array.from({ length: 4 * 128 }, (_, i) => 1 + ((i * 37) % 250)),
    [4, 128],
    'int32',
  );
  tf.tidy(() =>
    assertClose(
      compact.model.forward(ids, FULL, evalCtx),
      masked.model.forward(ids, FULL, evalCtx),
      1e-5,
      'deployed vs partitioned',
    ),
  );
  assert.equal(
    await quiet(['extract', '--run', deployed, '--sub', 'full', '--out', join(dir, 'extracted')]),
    0,
  );
  await assert.rejects(
    quiet(['train', '--run', join(dir, 'bad'), '--model', 'moe-transformer', '--steps', '1']),
    /needs token data/,
  );
  [masked.model, compact.model, ids].forEach((t) => t.dispose());
});
