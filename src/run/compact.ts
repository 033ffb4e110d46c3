/**
 * The deployed model of a partitioned run (packed PAD layers, λ folded), written as a new run whose
 * outputs equal the masked model's; `sortednet compact` calls it inside `intoNewFolder`.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, type BackendName } from '../engine/backend.js';
import { compactModel, specOf } from '../models/index.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import { FULL } from '../sorted/submodel.js';
import { loadCheckpoint, saveCheckpoint, writeRunConfig } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { labelledBatches } from '../train/evaluate.js';
import { calibrateBatchNorm } from '../nn/calibrate.js';
import { subModelContext } from '../nn/module.js';
import { loadRunData } from './run_folder.js';
import { COMPACT_RECORD } from './out_folder.js';
import type { RunConfig } from './run_config.js';

export async function compactInto(
  runDir: string,
  c: RunConfig,
  out: string,
  backend: BackendName = c.backend ?? 'wasm',
): Promise<void> {
  await initEngine(backend);
  const { model, meta } = await loadCheckpoint(runDir);
  const data = loadRunData(c);
  const probe = labelledBatches(data.test, 1, 64, 1)[0];
  // The deployed model is the full model (grid {}); it needs BN statistics under 'full'.
  const bns = namedBatchNorms(model);
  if (bns.some(([, bn]) => !bn.statsFor('full'))) {
    const inputs = labelledBatches(data.train, 20, 128).map((b) => (b.y.dispose(), b.x));
    calibrateBatchNorm(model, FULL, 'full', inputs);
    tf.dispose(inputs);
  }
  const deployed = compactModel(model); // with the 'full' statistics only
  const error = tf.tidy(() => {
    const ctx = subModelContext(FULL, 'eval');
    const diff = tf.sub(model.forward(probe.x, FULL, ctx), deployed.forward(probe.x, FULL, ctx));
    return tf.max(tf.abs(diff)).dataSync()[0];
  });
  tf.dispose([probe.x, probe.y]);
  if (!(error <= 1e-3))
    throw new Error(`compact: the deployed model differs from ${runDir} by ${error} (a bug)`);
  saveCheckpoint(out, {
    model: deployed,
    grid: {},
    step: meta.step,
    seed: meta.seed,
    train: meta.train,
    dataset: meta.dataset,
    preprocess: meta.preprocess,
  });
  writeRunConfig(out, JSON.stringify({ ...c, model: specOf(deployed), grid: {} }, null, 2) + '\n');
  writeFileAtomic(join(out, COMPACT_RECORD), JSON.stringify({ source: runDir }, null, 2) + '\n');
  const before = model.cost(FULL);
  const after = deployed.cost(FULL);
  console.log(
    `compact: ${after.params.toLocaleString('en-US')} parameters (masked model: ${model.parameterCount().toLocaleString('en-US')} stored, ` +
      `${before.params.toLocaleString('en-US')} deployed by formula), ${(after.flops / 1e6).toFixed(2)} MFLOPs / example; ` +
      `max |Δlogit| vs ${runDir}: ${error.toExponential(2)} → ${out}`,
  );
}
