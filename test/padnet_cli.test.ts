/** The command line on a PAD ResNet: train → checkpoint → partition → compact → load → equal outputs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { ForwardContext } from '../src/nn/module.js';
import { padLayers } from '../src/dynamic/partial.js';
import { tinyPadResNet } from './tiny_models.js';
import { FULL } from '../src/sorted/submodel.js';
import { checkpointDir, loadCheckpoint } from '../src/io/checkpoint.js';
import { quiet } from './cli_helpers.js';
import { assertClose } from './helpers.js';

const evalCtx: ForwardContext = { mode: 'eval', key: 'full' };

type Loaded = Awaited<ReturnType<typeof loadCheckpoint>>['model'];

/** The compacted (deployed) model's full forward equals the partitioned (masked) one's on `x`. */
function assertDeployedMatches(compact: Loaded, masked: Loaded, x: tf.Tensor): void {
  tf.tidy(() =>
    assertClose(
      compact.forward(x, FULL, evalCtx),
      masked.forward(x, FULL, evalCtx),
      1e-5,
      'deployed vs partitioned',
    ),
  );
}

/** `partition --kappa` then `compact` on a run; both results loaded from their checkpoints. */
async function partitionAndCompact(dir: string, run: string, kappa: number, batch: number) {
  const part = join(dir, 'part');
  const deployed = join(dir, 'deployed');
  assert.equal(
    await quiet(
      `partition --run ${run} --kappa ${kappa} --out ${part} --calibration 2 --batch-size ${batch}`,
    ),
    0,
  );
  assert.equal(await quiet(`compact --run ${part} --out ${deployed}`), 0);
  const record = JSON.parse(readFileSync(join(part, 'partition.json'), 'utf8'));
  const masked = await loadCheckpoint(part);
  const compact = await loadCheckpoint(deployed);
  assert.ok(compact.model.parameterCount() < masked.model.parameterCount());
  return {
    record,
    masked: masked.model,
    compact: compact.model,
    family: compact.meta.model.family,
    deployed,
  };
}

test('CLI: train a PAD ResNet → checkpoint → partition → compact → load → equal outputs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sortednet-pad-'));
  const run = join(dir, 'run');
  // A small PAD ResNet with a depth × width grid, as a JSON model spec.
  const config = join(dir, 'config.json');
  const model = tinyPadResNet({ blocks: [1, 2] });
  const grid = { depth: [2, 3], width: [0.5, 1] };
  writeFileSync(config, JSON.stringify({ model: { family: 'pad-resnet', config: model }, grid }));
  const sizes = '--train-subset 64 --test-subset 16 --batch-size 16';
  const train = `train --run ${run} --config ${config} --data mnist --steps 2 --gacc 2 --no-eval ${sizes}`;
  assert.equal(await quiet(train), 0);
  assert.ok(existsSync(join(checkpointDir(run), 'buffers.safetensors')), 'PAD masks are saved as buffers');
  const { record, masked, compact, family } = await partitionAndCompact(dir, run, 0.3, 16);
  assert.equal(record.kept, Math.round(0.3 * record.total));
  assert.equal(family, 'pad-resnet');
  const keptNow = padLayers(masked).reduce((a, l) => a + tf.tidy(() => tf.sum(l.masks[0]).dataSync()[0]), 0);
  assert.equal(keptNow, record.kept, 'the masks came back from the checkpoint');
  const x = tf.randomNormal([8, 28, 28, 1], 0, 1, 'float32', 5);
  assertDeployedMatches(compact, masked, x);
  await assert.rejects(quiet(`partition --run ${run} --kappa 1.5`), /kappa 1.5 must be in \(0, 1\]/);
  [masked, compact, x].forEach((t) => t.dispose());
});

test('CLI: a PAD-MoE transformer on SpamAssassin trains, evaluates, partitions, compacts, extracts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sortednet-moe-'));
  const run = join(dir, 'run');
  const sizes = '--batch-size 8 --train-subset 32 --test-subset 16';
  assert.equal(
    await quiet(`train --run ${run} --model moe-transformer --data spamassassin --steps 2 --gacc 1 ${sizes}`),
    0,
  );
  const rows = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8'));
  assert.equal(rows.length, 1);
  assert.ok(rows[0].accuracy >= 0 && rows[0].params > 0);
  const { masked, compact, deployed } = await partitionAndCompact(dir, run, 0.5, 8);
  const ids = tf.tensor2d(
    Array.from({ length: 4 * 128 }, (_, i) => 1 + ((i * 37) % 250)),
    [4, 128],
    'int32',
  );
  assertDeployedMatches(compact, masked, ids);
  assert.equal(await quiet(`extract --run ${deployed} --sub full --out ${join(dir, 'extracted')}`), 0);
  await assert.rejects(
    quiet(`train --run ${join(dir, 'bad')} --model moe-transformer --steps 1`),
    /needs token data/,
  );
  [masked, compact, ids].forEach((t) => t.dispose());
});
