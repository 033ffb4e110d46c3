/** `sortednet compact`: the deployed model of a partitioned run (packed PAD layers), as a new run. */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, parseBackend } from '../../engine/backend.js';
import { compactModel, specOf } from '../../models/index.js';
import { namedBatchNorms } from '../../nn/batchnorm.js';
import { FULL } from '../../sorted/submodel.js';
import { loadCheckpoint, saveCheckpoint, writeRunConfig } from '../../io/checkpoint.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { labelledBatches } from '../../train/evaluate.js';
import { calibrateBatchNorm } from '../../nn/calibrate.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { loadRunData } from '../run_folder.js';
import { COMPACT_RECORD, intoNewFolder, sourceRun } from '../out_folder.js';
import type { RunConfig } from '../run_config.js';

export const registerCompact: RegisterCommand = (program, exit) => {
  program
    .command('compact')
    .description(
      'write the deployed model of a run with PAD layers: packed dynamic/static values, λ folded, equal outputs',
    )
    .option('--run <dir>', 'the run folder (partitioned with sortednet partition)')
    .option('--out <dir>', 'an empty folder for the deployed model')
    .option('--backend <name>', "wasm (default: the run's), cpu or webgpu")
    .action(async (f: { run?: string; out?: string; backend?: string }) => {
      const runDir = need(f.run, '--run DIR', 'compact');
      const out = need(f.out, '--out DIR', 'compact');
      const c = sourceRun(runDir, 'compact', { deployed: false })!;
      await intoNewFolder(out, 'compact', () => compactInto(runDir, c, out, f));
      exit(0);
    });
};

async function compactInto(
  runDir: string,
  c: RunConfig,
  out: string,
  f: { backend?: string },
): Promise<void> {
  await initEngine(f.backend ? parseBackend(f.backend, '--backend') : (c.backend ?? 'wasm'));
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
    const ctx = { mode: 'eval' as const, key: 'full' };
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
