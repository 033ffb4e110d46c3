/** Training configuration: plain data with defaults, validated once where it enters. */
import type { OptimizerConfig } from './optim.js';
import type { SamplerOptions } from '../sorted/sample.js';
import { checkTemperatureSchedule, type TemperatureSchedule } from './temperature.js';

export const STRATEGIES = ['sorted', 'individual', 'full-only', 'sandwich', 'all-exits'] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface TrainConfig {
  strategy: Strategy;
  /** Optimizer steps (each accumulates gAcc micro-batches). */
  steps: number;
  batchSize: number;
  /**
   * Sub-models (micro-batches) accumulated per optimizer step (SortedNet's gAcc). Default 4; 1 for
   * `individual`, whose one sub-model per run then sees one batch a step, as each sorted sub-model
   * does on average when gAcc equals the grid size.
   */
  gAcc: number;
  /** Same batch for every sub-model of a step (true) or a fresh batch each (false, the default). */
  sameBatch: boolean;
  sampler: SamplerOptions;
  /** Loss weight per sub-model id (default 1). */
  lossWeights?: Record<string, number>;
  /** In-place distillation from the largest sub-model (sandwich baseline; off for SortedNet). */
  distill: boolean;
  optimizer: OptimizerConfig;
  warmupSteps: number;
  labelSmoothing: number;
  /** Random crop padding (0 = off) and horizontal flips. */
  augment: { cropPadding: number; flip: boolean };
  seed: number;
  /** Write a checkpoint every this many steps, and at the end (0 = only at the end). */
  checkpointEvery: number;
  /** Step folders kept in the run's checkpoints/ (the newest ones; at least 1). */
  keepCheckpoints: number;
  /** A non-finite loss or gradient: stop with an error (default), or skip that step's update. */
  nonFinite: 'stop' | 'skip';
  /** Dynamic-conv attention temperature, annealed per step (DY-Conv: 30 → 1); default 1 throughout. */
  temperature?: TemperatureSchedule;
}

export const defaultTrainConfig: TrainConfig = {
  strategy: 'sorted',
  steps: 300,
  batchSize: 64,
  gAcc: 4,
  sameBatch: false,
  sampler: {},
  distill: false,
  optimizer: { kind: 'adamw', lr: 3e-3, weightDecay: 0.01 },
  warmupSteps: 20,
  labelSmoothing: 0,
  augment: { cropPadding: 0, flip: false },
  seed: 1,
  // A killed run loses at most 100 steps; a save of resnet-small costs about one step (docs/reliability.md).
  checkpointEvery: 100,
  keepCheckpoints: 2,
  nonFinite: 'stop',
};

export function resolveTrainConfig(partial: Partial<TrainConfig>, where = 'train config'): TrainConfig {
  const known = new Set(Object.keys(defaultTrainConfig).concat(['lossWeights', 'temperature']));
  for (const k of Object.keys(partial)) {
    if (!known.has(k))
      throw new Error(`${where}: unknown field '${k}'; known fields: ${[...known].join(', ')}`);
  }
  const c: TrainConfig = {
    ...defaultTrainConfig,
    ...partial,
    gAcc: partial.gAcc ?? (partial.strategy === 'individual' ? 1 : defaultTrainConfig.gAcc),
    optimizer: { ...defaultTrainConfig.optimizer, ...(partial.optimizer ?? {}) },
    augment: { ...defaultTrainConfig.augment, ...(partial.augment ?? {}) },
    sampler: { ...(partial.sampler ?? {}) },
  };
  if (!(STRATEGIES as readonly string[]).includes(c.strategy)) {
    throw new Error(`${where}: strategy '${c.strategy}' is not one of ${STRATEGIES.join(', ')}`);
  }
  const posInt = (k: 'steps' | 'batchSize' | 'gAcc' | 'keepCheckpoints') => {
    if (!Number.isInteger(c[k]) || c[k] < 1)
      throw new Error(`${where}: ${k} must be a positive integer, got ${c[k]}`);
  };
  posInt('steps');
  posInt('batchSize');
  posInt('gAcc');
  posInt('keepCheckpoints');
  if (!Number.isInteger(c.checkpointEvery) || c.checkpointEvery < 0)
    throw new Error(
      `${where}: checkpointEvery must be an integer ≥ 0 (0: only at the end), got ${c.checkpointEvery}`,
    );
  if (c.nonFinite !== 'stop' && c.nonFinite !== 'skip')
    throw new Error(`${where}: nonFinite must be 'stop' or 'skip', got '${c.nonFinite}'`);
  // Any integer the JSON or the command line can hold exactly is a seed (src/data/random.ts hashes it).
  if (!Number.isSafeInteger(c.seed))
    throw new Error(
      `${where}: seed ${c.seed} cannot be represented exactly; give an integer of at most ±${Number.MAX_SAFE_INTEGER}`,
    );
  if (!['sgd', 'adamw'].includes(c.optimizer.kind))
    throw new Error(`${where}: optimizer.kind must be 'sgd' or 'adamw', got '${c.optimizer.kind}'`);
  if (!(c.optimizer.lr > 0)) throw new Error(`${where}: optimizer.lr must be > 0, got ${c.optimizer.lr}`);
  if (!(c.labelSmoothing >= 0 && c.labelSmoothing < 1))
    throw new Error(`${where}: labelSmoothing must be in [0, 1), got ${c.labelSmoothing}`);
  if (c.temperature) checkTemperatureSchedule(c.temperature, `${where}: temperature`);
  if (c.strategy === 'sandwich' && c.gAcc < 2)
    throw new Error(`${where}: sandwich needs gAcc ≥ 2 (largest + smallest + random)`);
  return c;
}
