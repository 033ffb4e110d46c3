/** `sortednet partition`: Iterative Mode Partition of a run's PAD layers, written as a new run. */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, parseBackend } from '../../engine/backend.js';
import { loadCheckpoint, saveCheckpoint, writeRunConfig } from '../../io/checkpoint.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { keepStatsOnly } from '../../nn/batchnorm.js';
import { checkKappa, partition } from '../../dynamic/imp.js';
import { labelledBatches } from '../../train/evaluate.js';
import { intArg, need, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { freshFolder, loadRunData } from '../run_folder.js';
import { intoNewFolder, sourceRun } from '../out_folder.js';
import type { RunConfig } from '../run_config.js';

interface PartitionFlags {
  run?: string;
  kappa?: number;
  out?: string;
  rounds: number;
  method: 'imp' | 'random';
  threshold: 'global' | 'per-layer';
  calibration: number;
  batchSize: number;
  seed: number;
  backend?: string;
}

export const registerPartition: RegisterCommand = (program, exit) => {
  program
    .command('partition')
    .description(
      "split the PAD layers of a run into dynamic (a fraction κ) and static elements (IMP on calibration batches of the run's data); writes a new run",
    )
    .option('--run <dir>', 'the run folder (a model with PAD layers, e.g. the pad-resnet preset)')
    .option('--kappa <k>', 'κ, the fraction of elements kept dynamic, in (0, 1]', numArg)
    .option('--out <dir>', 'the new run folder (default: <run>-kappa<k>)')
    .option('--rounds <t>', 'IMP rounds T (κ_t = κ^(t/T))', intArg, 3)
    .option('--method <m>', 'imp, or random (the ablation: same counts, random elements)', 'imp')
    .option('--threshold <t>', 'global (κ of all elements) or per-layer (κ of each mask)', 'global')
    .option('--calibration <n>', 'calibration mini-batches from the training data', intArg, 4)
    .option('--batch-size <n>', 'examples per calibration mini-batch', intArg, 64)
    .option('--seed <n>', 'seeds the choice of calibration batches and the random method', intArg, 1)
    .option('--backend <name>', "wasm (default: the run's), cpu or webgpu")
    .action(async (f: PartitionFlags) => {
      const runDir = need(f.run, '--run DIR', 'partition');
      const kappa = checkKappa(need(f.kappa, '--kappa K', 'partition'), '--kappa');
      if (f.method !== 'imp' && f.method !== 'random')
        throw new Error(`--method: '${f.method}' is not imp or random`);
      if (f.threshold !== 'global' && f.threshold !== 'per-layer')
        throw new Error(`--threshold: '${f.threshold}' is not global or per-layer`);
      const c = sourceRun(runDir, 'partition', { deployed: false })!;
      const out = f.out ?? freshFolder(`${runDir.replace(/\/+$/, '')}-kappa${kappa}`);
      await intoNewFolder(out, 'partition', () => partitionInto(runDir, c, out, { ...f, kappa }));
      exit(0);
    });
};

async function partitionInto(
  runDir: string,
  c: RunConfig,
  out: string,
  f: PartitionFlags & { kappa: number },
): Promise<void> {
  const kappa = f.kappa;
  await initEngine(f.backend ? parseBackend(f.backend, '--backend') : (c.backend ?? 'wasm'));
  const { model, meta } = await loadCheckpoint(runDir);
  const data = loadRunData(c);
  const batches = labelledBatches(data.train, f.calibration, f.batchSize, f.seed + 777);
  const stats = partition(model, batches, {
    kappa,
    rounds: f.rounds,
    method: f.method,
    threshold: f.threshold,
    seed: f.seed,
  });
  batches.forEach((b) => tf.dispose([b.x, b.y]));
  // Statistics of other sub-models describe the old masks: drop them ('eval' recalibrates).
  keepStatsOnly(model, 'full');
  saveCheckpoint(out, {
    model,
    grid: meta.grid,
    step: meta.step,
    seed: meta.seed,
    train: meta.train,
    dataset: meta.dataset,
    preprocess: meta.preprocess,
  });
  writeRunConfig(out, JSON.stringify(c, null, 2) + '\n');
  const record = { source: runDir, kappa, method: f.method, T: f.rounds, threshold: f.threshold, ...stats };
  writeFileAtomic(join(out, 'partition.json'), JSON.stringify(record, null, 2) + '\n');
  console.log(
    `partition (${f.method}, T = ${f.rounds}): kept ${stats.kept}/${stats.total} = ${stats.fraction.toFixed(4)} dynamic`,
  );
  for (const m of stats.masks)
    console.log(`  ${m.name}: ${m.kept}/${m.size} (${(100 * m.fraction).toFixed(1)}%)`);
  console.log(`wrote ${out} (evaluate with 'sortednet eval --run ${out}', deploy with 'sortednet compact')`);
}
