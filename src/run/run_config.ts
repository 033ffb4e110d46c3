/** A run's configuration (the JSON file `--config` reads and run.json records): plain data, checked by schema. */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DIMENSIONS } from '../sorted/submodel.js';
import { TrainConfigInputSchema } from '../train/config.js';
import { BACKENDS, type BackendName } from '../engine/backend.js';
import { posInt } from '../schema/fields.js';
import { describeIssues } from '../schema/describe.js';
import { ModelSpecInputSchema } from './model_spec.js';

const examples = z
  .number()
  .int('must be a positive number of examples (leave it out for all)')
  .positive('must be a positive number of examples (leave it out for all)');
const budgets = z.array(z.number().positive());

const DataSchema = z.preprocess(
  // A bare name is unambiguous: "data": "fashion-mnist" is { "name": "fashion-mnist" }.
  (v) => (typeof v === 'string' ? { name: v } : v),
  z
    .object({
      name: z.string().min(1),
      trainSubset: examples,
      testSubset: examples,
      csv: z
        .object({ labelColumn: z.union([z.string(), z.number().int()]), delimiter: z.string() })
        .partial()
        .strict(),
    })
    .partial({ trainSubset: true, testSubset: true, csv: true })
    .strict(),
);

const GridSchema = z
  .object({
    ...Object.fromEntries(DIMENSIONS.map((d) => [d, budgets])),
    layers: z.record(z.array(posInt)),
  })
  .partial()
  .strict();

export const RunConfigSchema = z
  .object({
    /** A preset name (see `sortednet presets`) or a model spec: a family and the fields that differ from its preset. */
    model: z.union([z.string().min(1), ModelSpecInputSchema]),
    data: DataSchema,
    /** Overrides the preset's grid. */
    grid: GridSchema,
    train: TrainConfigInputSchema,
    backend: z.enum(BACKENDS as [BackendName, ...BackendName[]]),
    eval: z.object({ calibrationBatches: posInt, latencyReps: posInt }).partial().strict(),
    /** The run started from these weights (`--init-from`): the folder given, the checkpoint read and its step. */
    initFrom: z
      .object({ from: z.string().min(1), checkpoint: z.string(), step: z.number().int().nonnegative() })
      .partial({ checkpoint: true, step: true })
      .strict(),
  })
  .partial()
  .strict();

/** A run config as a file may hold it: any of its fields (the command line and defaults fill the rest). */
export type RunConfigInput = z.infer<typeof RunConfigSchema>;
/** A complete run config: a model, data and training fields. */
export type RunConfig = RunConfigInput & Required<Pick<RunConfigInput, 'model' | 'data' | 'train'>>;

export function readRunConfig(path: string): RunConfigInput {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config ${path}: ${(e as Error).message}`, { cause: e });
  }
  return parseRunConfig(text, path);
}

/** Checks a run config's JSON text; `where` names the file in errors. */
export function parseRunConfig(text: string, where: string): RunConfigInput {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`config ${where}: ${(e as Error).message}`, { cause: e });
  }
  const r = RunConfigSchema.safeParse(json);
  if (!r.success)
    throw new Error(`config ${where}: ${describeIssues(r.error, { json, schema: RunConfigSchema })}`);
  return r.data;
}

/** Values a run config may hold that the code below would otherwise misread (0 taken as "all"). */
export function checkRunConfig(c: RunConfig, where: string): void {
  for (const k of ['trainSubset', 'testSubset'] as const) {
    const v = c.data[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1))
      throw new Error(
        `${where}: data.${k} must be a positive number of examples, got ${v} (leave it out for all)`,
      );
  }
  checkEvalConfig(c, where);
}

export function checkEvalConfig(c: RunConfig, where: string): void {
  for (const k of ['calibrationBatches', 'latencyReps'] as const) {
    const v = c.eval?.[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1))
      throw new Error(`${where}: eval.${k} must be a positive integer, got ${JSON.stringify(v)}`);
  }
}
