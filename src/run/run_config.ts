/** A run's configuration (the JSON file `--config` reads and run.json records): plain data, checked by schema. */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DIMENSIONS } from '../sorted/submodel.js';
import type { GridSpec } from '../sorted/grid.js';
import type { ModelSpec } from '../models/index.js';
import { STRATEGIES, type TrainConfig } from '../train/config.js';
import { BACKENDS, type BackendName } from '../engine/backend.js';
import { ModelSpecSchema, posInt, type ModelSpecInput } from './model_spec.js';

export interface RunConfig {
  /** A preset name (see `sortednet presets`) or a model spec: a family and the fields that differ from its preset. */
  model: string | ModelSpecInput | ModelSpec;
  data: {
    name: string;
    trainSubset?: number;
    testSubset?: number;
    /** A user's CSV: which column holds the labels, and the delimiter when not sniffed. */
    csv?: { labelColumn?: string | number; delimiter?: string };
  };
  /** Overrides the preset's grid. */
  grid?: GridSpec;
  train: Partial<TrainConfig>;
  backend?: BackendName;
  eval?: { calibrationBatches?: number; latencyReps?: number };
}

const examples = z
  .number()
  .int('must be a positive number of examples (leave it out for all)')
  .positive('must be a positive number of examples (leave it out for all)');
const count = z.number().int().min(0);
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

const TrainSchema = z
  .object({
    strategy: z.enum(STRATEGIES),
    steps: posInt,
    batchSize: posInt,
    gAcc: posInt,
    sameBatch: z.boolean(),
    sampler: z
      .object({
        weights: z.union([z.array(z.number().min(0)), z.record(z.number().min(0))]),
        alwaysIncludeLargest: z.boolean(),
        alwaysIncludeSmallest: z.boolean(),
      })
      .partial()
      .strict(),
    lossWeights: z.record(z.number()),
    distill: z.boolean(),
    optimizer: z
      .object({
        kind: z.enum(['sgd', 'adamw']),
        lr: z.number().positive(),
        momentum: z.number().min(0),
        weightDecay: z.number().min(0),
        beta1: z.number().min(0).lt(1),
        beta2: z.number().min(0).lt(1),
        epsilon: z.number().positive(),
      })
      .partial()
      .strict(),
    warmupSteps: count,
    labelSmoothing: z.number().min(0).lt(1),
    augment: z.object({ cropPadding: count, flip: z.boolean() }).partial().strict(),
    seed: z.number().int(),
    checkpointEvery: count,
    keepCheckpoints: posInt,
    nonFinite: z.enum(['stop', 'skip']),
    temperature: z
      .object({ start: z.number().positive(), end: z.number().positive(), steps: count })
      .strict(),
  })
  .partial()
  .strict();

export const RunConfigSchema = z
  .object({
    model: z.union([z.string().min(1), ModelSpecSchema]),
    data: DataSchema,
    grid: GridSchema,
    train: TrainSchema,
    backend: z.enum(BACKENDS as [BackendName, ...BackendName[]]),
    eval: z.object({ calibrationBatches: posInt, latencyReps: posInt }).partial().strict(),
  })
  .partial()
  .strict();

export function readRunConfig(path: string): Partial<RunConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config ${path}: ${(e as Error).message}`, { cause: e });
  }
  return parseRunConfig(text, path);
}

/** Checks a run config's JSON text; `where` names the file in errors. */
export function parseRunConfig(text: string, where: string): Partial<RunConfig> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`config ${where}: ${(e as Error).message}`, { cause: e });
  }
  const r = RunConfigSchema.safeParse(json);
  if (!r.success) throw new Error(`config ${where}: ${describeIssues(r.error, json)}`);
  return r.data as Partial<RunConfig>;
}

/** Zod's issues as `path: what is wrong, what is expected`; `json` is the checked value (for known fields). */
export function describeIssues(
  e: z.ZodError,
  json?: unknown,
  schema: z.ZodTypeAny = RunConfigSchema,
): string {
  return e.issues
    .map((i) => {
      const at = (path: (string | number)[]) => (path.length ? path.join('.') : 'the top level');
      switch (i.code) {
        case 'unrecognized_keys': {
          const known = fieldsAt(schema, i.path, json);
          const keys = i.keys.map((k) => `'${k}'`).join(', ');
          return `${at(i.path)}: unknown field ${keys}${known.length ? `; known: ${known.join(', ')}` : ''}`;
        }
        case 'invalid_union': {
          // Neither a preset name nor a spec: the spec's own complaint when it came close, else what is expected.
          const inner = i.unionErrors
            .flatMap((u) => u.issues)
            .find((u) => u.code !== 'invalid_type' || u.path.length > i.path.length);
          if (inner) return describeIssues(new z.ZodError([inner]), json, schema);
          return `${at(i.path)}: expected a preset name or { "family": ..., "config": {...} }`;
        }
        case 'invalid_union_discriminator':
          return `${at(i.path)}: expected one of ${i.options.map((o) => `'${String(o)}'`).join(', ')}`;
        case 'invalid_enum_value':
          return `${at(i.path)}: '${String(i.received)}' is not one of ${i.options.map((o) => `'${o}'`).join(', ')}`;
        case 'invalid_type':
          return `${at(i.path)}: expected ${i.expected}, got ${i.received === 'undefined' ? 'nothing' : i.received}`;
        default:
          return `${at(i.path)}: ${i.message}, got ${JSON.stringify(valueAt(json, i.path))}`;
      }
    })
    .join('; ');
}

function valueAt(json: unknown, path: (string | number)[]): unknown {
  return path.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], json);
}

/** The field names the schema allows at `path` (an object's), following the checked value through unions. */
function fieldsAt(schema: z.ZodTypeAny, path: (string | number)[], json: unknown): string[] {
  let t: z.ZodTypeAny | undefined = schema;
  let v = json;
  for (let depth = 0; t;) {
    if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t.unwrap() as z.ZodTypeAny;
    else if (t instanceof z.ZodDefault) t = t.removeDefault() as z.ZodTypeAny;
    else if (t instanceof z.ZodEffects) t = t.innerType() as z.ZodTypeAny;
    else if (t instanceof z.ZodDiscriminatedUnion) {
      const d = (v as Record<string, unknown> | undefined)?.[t.discriminator];
      t = t.optionsMap.get(d as string) as z.ZodTypeAny | undefined;
    } else if (t instanceof z.ZodUnion) {
      t = (t.options as z.ZodTypeAny[]).find((o) => !(o instanceof z.ZodString));
    } else if (t instanceof z.ZodObject) {
      if (depth === path.length) return Object.keys(t.shape as object);
      const k = path[depth++];
      t = (t.shape as Record<string, z.ZodTypeAny>)[k];
      v = (v as Record<string, unknown> | undefined)?.[k];
    } else return [];
  }
  return [];
}
