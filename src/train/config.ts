/**
 * Training configuration: plain data with defaults, validated once where it enters. One schema
 * (TrainConfigSchema) checks it wherever it comes from: code, a run config, a checkpoint.
 */
import { z } from 'zod';
import { OptimizerConfigSchema } from './optim.js';
import { SamplerOptionsSchema } from '../sorted/sample.js';
import { checkTemperatureSchedule, TemperatureScheduleSchema } from './temperature.js';
import { count, posInt, seed, unitInterval } from '../schema/fields.js';
import { checked } from '../schema/describe.js';

export const STRATEGIES = ['sorted', 'individual', 'full-only', 'sandwich', 'all-exits'] as const;
export type Strategy = (typeof STRATEGIES)[number];

const AugmentSchema = z.object({ cropPadding: count, flip: z.boolean() }).strict();

const trainFields = {
  strategy: z.enum(STRATEGIES),
  /** Optimizer steps (each accumulates gAcc micro-batches). */
  steps: posInt,
  batchSize: posInt,
  /**
   * Sub-models (micro-batches) accumulated per optimizer step (SortedNet's gAcc). Default 4; 1 for
   * `individual`, whose one sub-model per run then sees one batch a step, as each sorted sub-model
   * does on average when gAcc equals the grid size.
   */
  gAcc: posInt,
  /** Same batch for every sub-model of a step (true) or a fresh batch each (false, the default). */
  sameBatch: z.boolean(),
  sampler: SamplerOptionsSchema,
  /** Loss weight per sub-model id (default 1). */
  lossWeights: z.record(z.number()).optional(),
  /** In-place distillation from the largest sub-model (sandwich baseline; off for SortedNet). */
  distill: z.boolean(),
  optimizer: OptimizerConfigSchema,
  warmupSteps: count,
  labelSmoothing: unitInterval,
  /** Random crop padding (0 = off) and horizontal flips. */
  augment: AugmentSchema,
  seed,
  /** Write a checkpoint every this many steps, and at the end (0 = only at the end). */
  checkpointEvery: z
    .number()
    .int('must be an integer ≥ 0 (0: only at the end)')
    .min(0, 'must be an integer ≥ 0 (0: only at the end)'),
  /** Step folders kept in the run's checkpoints/ (the newest ones; at least 1). */
  keepCheckpoints: posInt,
  /** A non-finite loss or gradient: stop with an error (default), or skip that step's update. */
  nonFinite: z.enum(['stop', 'skip']),
  /** Dynamic-conv attention temperature, annealed per step (DY-Conv: 30 → 1); default 1 throughout. */
  temperature: TemperatureScheduleSchema.optional(),
};

/** A complete training config (what `resolveTrainConfig` returns and a checkpoint records). */
export const TrainConfigSchema = z.object(trainFields).strict();
export type TrainConfig = z.infer<typeof TrainConfigSchema>;

/**
 * The fields a user gives (a run config's `train`, `resolveTrainConfig`'s argument): any of them,
 * and any fields of the optimizer and augmentation; the defaults fill in the rest.
 */
export const TrainConfigInputSchema = z
  .object({ ...trainFields, optimizer: OptimizerConfigSchema.partial(), augment: AugmentSchema.partial() })
  .partial()
  .strict();
export type TrainConfigInput = z.infer<typeof TrainConfigInputSchema>;

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

export function resolveTrainConfig(partial: TrainConfigInput, where = 'train config'): TrainConfig {
  checked(TrainConfigInputSchema, partial, where, true);
  const merged = {
    ...defaultTrainConfig,
    ...partial,
    gAcc: partial.gAcc ?? (partial.strategy === 'individual' ? 1 : defaultTrainConfig.gAcc),
    optimizer: { ...defaultTrainConfig.optimizer, ...(partial.optimizer ?? {}) },
    augment: { ...defaultTrainConfig.augment, ...(partial.augment ?? {}) },
    sampler: { ...(partial.sampler ?? {}) },
  };
  checked(TrainConfigSchema, merged, where, true);
  const c: TrainConfig = merged; // as given (zod's parse would copy it)
  if (c.temperature) checkTemperatureSchedule(c.temperature, `${where}: temperature`);
  if (c.strategy === 'sandwich' && c.gAcc < 2)
    throw new Error(`${where}: sandwich needs gAcc ≥ 2 (largest + smallest + random)`);
  return c;
}
