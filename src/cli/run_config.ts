/** A run's configuration (the JSON file `--config` reads and run.json records): plain data. */
import { readFileSync } from 'node:fs';
import type { GridSpec } from '../sorted/grid.js';
import type { ModelSpec } from '../models/index.js';
import type { TrainConfig } from '../train/config.js';
import type { BackendName } from '../engine/backend.js';

export interface RunConfig {
  /** A preset name (see `sortednet presets`) or a full model spec. */
  model: string | ModelSpec;
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
  try {
    const c = JSON.parse(text);
    if (typeof c !== 'object' || c === null || Array.isArray(c))
      throw new Error('the top level must be an object');
    const known = ['model', 'data', 'grid', 'train', 'backend', 'eval'];
    for (const k of Object.keys(c))
      if (!known.includes(k)) throw new Error(`unknown field '${k}'; known: ${known.join(', ')}`);
    return c as Partial<RunConfig>;
  } catch (e) {
    throw new Error(`config ${where}: ${(e as Error).message}`, { cause: e });
  }
}
