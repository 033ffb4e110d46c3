/** A run folder as the commands read it: run.json (validated), its data, eval results. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelSpec } from '../models/index.js';
import type { SortedModel } from '../models/model.js';
import type { Grid, GridSpec } from '../sorted/grid.js';
import { loadDataset } from '../data/registry.js';
import { subset, type TrainTest } from '../data/dataset.js';
import { isSequenceDataset, type SequenceDataset } from '../data/sequences.js';
import { spamAssassinSplits } from '../data/email.js';
import { evaluateGrid, type EvalRow } from '../train/evaluate.js';
import { parseEvalJson } from '../train/eval_json.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { Module } from '../nn/module.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import { hasCheckpoint, saveCalibration, verifyRunConfig } from '../io/checkpoint.js';
import { accuracyFlopsSvg, formatTable, toCsv } from '../io/report.js';
import { getPreset } from './presets.js';
import { parseRunConfig, type RunConfig } from './run_config.js';
import { resolveModelSpec, type ModelSpecInput } from './model_spec.js';

/** run.json of a run folder; a missing or broken file says which and what to do. */
export function readRunJson(runDir: string): RunConfig {
  const path = join(runDir, 'run.json');
  if (!existsSync(path)) {
    throw new Error(
      `${path} not found: is ${runDir} a run folder? ('sortednet train --run ${runDir}' makes one)`,
    );
  }
  const bytes = readFileSync(path);
  verifyRunConfig(runDir, bytes); // an edit since the checkpoint was saved is refused, naming the field
  const c = parseRunConfig(bytes.toString('utf8'), path);
  if (c.model === undefined || c.data === undefined) throw new Error(`${path}: 'model' or 'data' is missing`);
  return { train: {}, ...c } as RunConfig;
}

/** A run's data: images, or token sequences with a class each (text classification). */
export type RunData = TrainTest | { train: SequenceDataset; test: SequenceDataset };

/** Text classification sets by name: byte tokens, 128 per example. */
export const SEQUENCE_DATASETS = ['spamassassin'] as const;

export function loadRunData(c: RunConfig): RunData {
  if (c.data.name === 'spamassassin') {
    const { train, test } = spamAssassinSplits(128, 1, c.data.trainSubset ?? 0);
    const n = c.data.testSubset;
    if (n === undefined || n >= test.n) return { train, test };
    return {
      train,
      test: {
        ...test,
        n,
        sequences: test.sequences.subarray(0, n * test.seqLen),
        labels: test.labels.subarray(0, n),
      },
    };
  }
  const d = loadDataset(c.data.name, { csv: c.data.csv });
  return {
    train: c.data.trainSubset ? subset(d.train, c.data.trainSubset, 1) : d.train,
    test: c.data.testSubset ? subset(d.test, c.data.testSubset, 2) : d.test,
  };
}

export function modelSpecFor(
  c: RunConfig,
  data: RunData,
  where = 'run config',
): { spec: ModelSpec; grid: GridSpec } {
  const t = data.train;
  const shape = isSequenceDataset(t)
    ? { channels: 1, size: t.seqLen, classes: t.numClasses, vocab: t.vocab }
    : { channels: t.channels, size: t.height, classes: t.numClasses };
  if (typeof c.model === 'string') {
    const p = getPreset(c.model);
    return { spec: p.model(shape), grid: c.grid ?? p.grid };
  }
  return resolveModelSpec(c.model as ModelSpecInput, shape, c.grid, where);
}

/** The run config as run.json records it: an explicit model spec fully resolved, with its grid. */
export function resolvedRunConfig(c: RunConfig, spec: ModelSpec, grid: GridSpec): RunConfig {
  return typeof c.model === 'string' ? c : { ...c, model: spec, grid };
}

/** The sub-runs in `runDir` that hold a checkpoint (an individual run keeps each sub-model in DIR/sub-<id>). */
export function trainedSubRuns(runDir: string): string[] {
  if (!existsSync(runDir)) return [];
  return readdirSync(runDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name.startsWith('sub-') && hasCheckpoint(join(runDir, d.name)))
    .map((d) => join(runDir, d.name));
}

/** `base`, or `base-2`, `base-3`… : the first that holds no run, so earlier results are never overwritten. */
export function freshFolder(base: string): string {
  for (let i = 1; ; i++) {
    const dir = i === 1 ? base : `${base}-${i}`;
    if (!hasCheckpoint(dir) && trainedSubRuns(dir).length === 0) return dir;
  }
}

export function writeEval(runDir: string, rows: EvalRow[], title: string): void {
  writeFileAtomic(join(runDir, 'eval.json'), JSON.stringify(rows, null, 2) + '\n');
  writeFileAtomic(join(runDir, 'eval.csv'), toCsv(rows));
  writeFileAtomic(
    join(runDir, 'plot.svg'),
    accuracyFlopsSvg([{ name: title, rows }], `${title}: accuracy vs FLOPs`),
  );
}

/**
 * Evaluates every sub-model of `grid` (BN recalibrated per sub-model), keeps the calibrated BN
 * statistics beside the weights (which stay as they are) for extract/serving, and writes eval.json.
 */
export function evaluateInto(
  runDir: string,
  model: SortedModel,
  grid: Grid,
  data: RunData,
  c: RunConfig,
  title: string,
): EvalRow[] {
  const rows = evaluateGrid(model, grid, data.train, data.test, c.eval);
  saveCalibration(runDir, model);
  writeEval(runDir, rows, title);
  return rows;
}

/** Adds a session's training seconds to the run's train_time.json (a resume adds to what was there). */
export function addTrainTime(runDir: string, seconds: number, resume: boolean): void {
  const path = join(runDir, 'train_time.json');
  const prev =
    resume && existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { seconds: number }).seconds : 0;
  writeFileAtomic(path, JSON.stringify({ seconds: prev + seconds }) + '\n');
}

export function readEvalRows(runDir: string): EvalRow[] {
  const path = join(runDir, 'eval.json');
  if (!existsSync(path)) throw new Error(`${path} not found; run 'sortednet eval --run ${runDir}' first`);
  const again = `run 'sortednet eval --run ${runDir}' again`;
  const rows = parseEvalJson(readFileSync(path, 'utf8'), path, again);
  if (rows.length === 0) throw new Error(`${path} holds no evaluated sub-models; ${again}`);
  // Classifier runs write whole EvalRows; the parser checked the fields readers rely on.
  return rows as unknown as EvalRow[];
}

export const runTitle = (c: RunConfig, family: string, strategy = c.train?.strategy ?? '') =>
  `${typeof c.model === 'string' ? c.model : family} ${strategy}`.trim();

/**
 * The line before an evaluation, worded by what the test examples are (images, rows of features,
 * token sequences) and mentioning BN recalibration only for a model that has BatchNorm.
 */
export function evaluationHeadline(model: Module, subModels: number, test: RunData['test']): string {
  const kind = isSequenceDataset(test) ? 'sequences' : test.height * test.width === 1 ? 'rows' : 'images';
  const bn = namedBatchNorms(model).length > 0 ? ' (BN recalibrated per sub-model)' : '';
  const s = subModels === 1 ? '' : 's';
  return `evaluating ${subModels} sub-model${s}${bn} on ${test.n} test ${kind}…`;
}

/** Evaluates every sub-model into the run folder and prints the table. */
export function evaluateRun(
  runDir: string,
  model: SortedModel,
  grid: Grid,
  data: RunData,
  c: RunConfig,
  title: string,
): number {
  console.log(evaluationHeadline(model, grid.size, data.test));
  const rows = evaluateInto(runDir, model, grid, data, c, title);
  console.log(formatTable(rows));
  console.log(`wrote ${join(runDir, 'eval.json')}, eval.csv, plot.svg`);
  return 0;
}
