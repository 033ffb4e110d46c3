/**
 * Iterative Mode Partition of a run's PAD layers, written as a new run with partition.json
 * (`sortednet partition` calls it inside `intoNewFolder`).
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, type BackendName } from '../engine/backend.js';
import { loadCheckpoint, saveCheckpoint, writeRunConfig } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { keepStatsOnly } from '../nn/batchnorm.js';
import { partition } from '../dynamic/imp.js';
import { labelledBatches } from '../train/evaluate.js';
import { loadRunData } from './run_folder.js';
import type { RunConfig } from './run_config.js';

export interface PartitionRunOptions {
  /** κ, the fraction of elements kept dynamic, in (0, 1]. */
  kappa: number;
  /** IMP rounds T (κ_t = κ^(t/T)). */
  rounds: number;
  /** imp, or random (the ablation: same counts, random elements). */
  method: 'imp' | 'random';
  threshold: 'global' | 'per-layer';
  /** Calibration mini-batches from the training data, and their size. */
  calibration: number;
  batchSize: number;
  seed: number;
  /** The engine; default the run's. */
  backend?: BackendName;
}

export async function partitionInto(
  runDir: string,
  c: RunConfig,
  out: string,
  f: PartitionRunOptions,
): Promise<void> {
  const kappa = f.kappa;
  await initEngine(f.backend ?? c.backend ?? 'wasm');
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
