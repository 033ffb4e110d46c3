/**
 * `train --resume` with the flags the run was started with: a flag whose value equals the run's
 * recorded one is the same run and accepted; only a real change is refused, naming both values.
 */
import { resolve } from 'node:path';
import { resolveTrainConfig } from '../train/config.js';
import type { RunConfig } from './run_config.js';

/** The flags that describe the run itself, each with where run.json keeps its value. */
const FIXED: Record<string, (c: RunConfig) => unknown> = {
  model: (c) => c.model,
  data: (c) => c.data.name,
  strategy: (c) => resolveTrainConfig(c.train).strategy,
  batchSize: (c) => resolveTrainConfig(c.train).batchSize,
  gacc: (c) => resolveTrainConfig(c.train).gAcc,
  lr: (c) => resolveTrainConfig(c.train).optimizer.lr,
  optimizer: (c) => resolveTrainConfig(c.train).optimizer.kind,
  seed: (c) => resolveTrainConfig(c.train).seed,
  trainSubset: (c) => c.data.trainSubset,
  testSubset: (c) => c.data.testSubset,
  labelColumn: (c) => c.data.csv?.labelColumn,
  delimiter: (c) => c.data.csv?.delimiter,
};

export const FIXED_ON_RESUME = [...Object.keys(FIXED), 'config'];

const flagName = (k: string) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
const show = (v: unknown) => (v === undefined ? 'not set' : typeof v === 'string' ? v : JSON.stringify(v));

/** Whether `given` (a flag's or a config file's value) says what `recorded` holds; objects may be partial. */
function same(recorded: unknown, given: unknown): boolean {
  if (given !== null && typeof given === 'object' && recorded !== null && typeof recorded === 'object') {
    // run.json records the complete model spec; a config file may name only the fields it changes.
    return Object.entries(given).every(([k, v]) => same((recorded as Record<string, unknown>)[k], v));
  }
  return recorded === given;
}

/**
 * The fixed flags given on --resume whose values differ from the run's, as "--lr 0.1 (the run
 * has 0.003)". `given` is the run config those flags alone build; `file` is --config's content.
 */
export function resumeChanges(
  flags: Readonly<Record<string, unknown>>,
  given: RunConfig,
  recorded: RunConfig,
  file?: Partial<RunConfig>,
): string[] {
  const changes: string[] = [];
  for (const [key, valueOf] of Object.entries(FIXED)) {
    if (flags[key] === undefined) continue;
    const [now, was] = [valueOf(given), valueOf(recorded)];
    const samePath =
      key === 'data' && typeof now === 'string' && typeof was === 'string' && resolve(now) === resolve(was);
    if (!same(was, now) && !samePath)
      changes.push(`${flagName(key)} ${show(now)} (the run has ${show(was)})`);
  }
  if (file) {
    for (const key of ['model', 'data', 'grid', 'train'] as const) {
      if (file[key] === undefined) continue;
      const want = key === 'train' ? withoutRecovery(file.train!) : file[key];
      const data = key === 'data' && typeof want === 'string' ? { name: want } : want;
      if (!same(recorded[key], data))
        changes.push(`--config ${key} ${show(data)} (the run has ${show(recorded[key])})`);
    }
  }
  return changes;
}

/** The train fields that may change on --resume (length and crash handling) are not compared. */
function withoutRecovery(t: Partial<RunConfig['train']>): Partial<RunConfig['train']> {
  const rest: Record<string, unknown> = { ...t };
  for (const k of ['steps', 'checkpointEvery', 'keepCheckpoints', 'nonFinite']) delete rest[k];
  return rest;
}
