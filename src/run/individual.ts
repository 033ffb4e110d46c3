/**
 * The `individual` strategy's run folder: every sub-model is trained alone, from scratch, and
 * stored as a run of its own, DIR/sub-<id> (run.json with a one-entry grid, checkpoints/, log.jsonl,
 * eval.json), written by the crash-safe driver. DIR holds run.json (the whole grid), the combined
 * eval.json, and a log of which sub-model finished. A resume skips finished sub-models and
 * continues an interrupted one from its checkpoint.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildModel, type ModelSpec } from '../models/index.js';
import { Grid, type GridSpec } from '../sorted/grid.js';
import { DIMENSIONS, parseSubModel, subModelId, type SubModel } from '../sorted/submodel.js';
import type { TrainConfig } from '../train/config.js';
import type { EvalRow } from '../train/evaluate.js';
import { trainRun, truncateLog } from './train_run.js';
import { hasCheckpoint, loadCheckpoint, readCheckpointMeta, writeRunConfig } from '../io/checkpoint.js';
import { acquireRunLock } from '../io/lock.js';
import { writeFileAtomic } from '../io/atomic.js';
import { formatTable } from '../io/report.js';
import { preprocessOf } from '../deploy/preprocess.js';
import type { RunConfig } from './run_config.js';
import { getPreset } from './presets.js';
import {
  addTrainTime,
  evaluateInto,
  loadRunData,
  modelSpecFor,
  readEvalRows,
  readRunJson,
  runTitle,
  writeEval,
  type RunData,
} from './run_folder.js';

/** Where an individual run keeps the model of sub-model `id`. */
export const subRunDir = (runDir: string, id: string) => join(runDir, `sub-${id}`);

/** The grid holding only `sub`: a sub-run is a plain run of that one sub-model. */
export function singleEntryGrid(sub: SubModel): GridSpec {
  const g: GridSpec = {};
  for (const d of DIMENSIONS) if (sub[d] !== undefined) g[d] = [sub[d]];
  if (sub.layers) g.layers = Object.fromEntries(Object.entries(sub.layers).map(([k, v]) => [k, [v]]));
  return g;
}

const gridSize = (g: GridSpec) =>
  DIMENSIONS.reduce((n, d) => n * (g[d]?.length ?? 1), 1) *
  Object.values(g.layers ?? {}).reduce((n, v) => n * v.length, 1);

/** An individual run over several sub-models (stored in sub-folders); a one-entry grid is a plain run. */
export function isIndividualParent(c: RunConfig): boolean {
  if (c.train?.strategy !== 'individual') return false;
  const grid = runGrid(c);
  return grid !== undefined && gridSize(grid) > 1;
}

const runGrid = (c: RunConfig): GridSpec | undefined =>
  c.grid ?? (typeof c.model === 'string' ? getPreset(c.model).grid : undefined);

/** The grid's largest sub-model (every dimension at its largest value): what 'full' names in an individual run. */
function largestOf(grid: GridSpec): SubModel {
  const sub: Record<string, unknown> = {};
  for (const d of DIMENSIONS) if (grid[d]?.length) sub[d] = Math.max(...grid[d]);
  if (grid.layers)
    sub.layers = Object.fromEntries(Object.entries(grid.layers).map(([k, v]) => [k, Math.max(...v)]));
  return sub as SubModel;
}

/**
 * The run folder holding sub-model `sub` of `runDir`: `runDir` itself, or for an individual run its
 * sub-run; `sub` undefined on an individual run is an error, since no one model holds them all.
 */
export function resolveSubRun(runDir: string, sub: string | undefined, command: string): string {
  if (!existsSync(join(runDir, 'run.json'))) return runDir;
  const config = readRunJson(runDir);
  if (!isIndividualParent(config)) return runDir;
  if (sub === undefined) {
    throw new Error(
      `${runDir} is an individual run: each sub-model is a model of its own, in ${join(runDir, 'sub-<id>')}; give ${command} --sub ID (see 'sortednet pick --run ${runDir}'), or --run ${join(runDir, 'sub-<id>')}`,
    );
  }
  const parsed = parseSubModel(sub, '--sub');
  // 'full' names the largest model the individual run trained, as it does in a sorted run's grid.
  const wanted = Object.keys(parsed).length === 0 ? largestOf(runGrid(config) ?? {}) : parsed;
  const dir = subRunDir(runDir, subModelId(wanted));
  if (!hasCheckpoint(dir)) {
    throw new Error(
      `${dir} holds no checkpoint: sub-model ${sub} of the individual run ${runDir} is not trained (not in its grid, or the run stopped before it; continue it with 'sortednet train --run ${runDir} --resume')`,
    );
  }
  return dir;
}

export interface IndividualOptions {
  resume: boolean;
  noEval: boolean;
  /** Appends one record to the parent's log.jsonl. */
  log: (rec: object) => void;
}

/** Trains (or continues) every sub-model of `gridSpec` in its own sub-run; see the module comment. */
export async function trainIndividual(
  runDir: string,
  c: RunConfig,
  tc: TrainConfig,
  data: RunData,
  spec: ModelSpec,
  gridSpec: GridSpec,
  { resume, noEval, log }: IndividualOptions,
): Promise<number> {
  const probe = buildModel(spec, tc.seed);
  const grid = new Grid(gridSpec, probe);
  probe.dispose();
  const samples = tc.steps * tc.gAcc * tc.batchSize;
  console.log(
    `${grid.size} sub-models, each trained alone from scratch in ${join(runDir, 'sub-<id>')}: ${tc.steps} steps × gAcc ${tc.gAcc} × batch ${tc.batchSize} = ${samples} samples each`,
  );
  log({
    event: 'budget',
    subModels: grid.size,
    steps: tc.steps,
    gAcc: tc.gAcc,
    batchSize: tc.batchSize,
    samplesPerSubModel: samples,
  });
  const title = runTitle(c, spec.family, tc.strategy);
  const rows: EvalRow[] = [];
  for (const entry of grid.entries) {
    const dir = subRunDir(runDir, entry.id);
    const sc: RunConfig = { ...c, grid: singleEntryGrid(entry.sub) };
    const at = resume && hasCheckpoint(dir) ? readCheckpointMeta(dir).step : 0;
    mkdirSync(dir, { recursive: true });
    writeRunConfig(dir, JSON.stringify(sc, null, 2) + '\n');
    if (at >= tc.steps) {
      console.log(`  ${entry.id}: already trained (step ${at} of ${tc.steps}), skipped`);
      if (noEval) continue;
      rows.push(
        ...(existsSync(join(dir, 'eval.json')) ? readEvalRows(dir) : await evaluateSubRun(dir, sc, data)),
      );
      continue;
    }
    if (at > 0) console.log(`  ${entry.id}: resuming at step ${at} of ${tc.steps}`);
    rmSync(join(dir, 'eval.json'), { force: true }); // of fewer steps: it would be taken as this one's
    const logPath = join(dir, 'log.jsonl');
    truncateLog(logPath, at);
    const model = buildModel(spec, tc.seed);
    try {
      const sub = new Grid(sc.grid!, model);
      const r = await trainRun(dir, model, sub, data.train, tc, {
        resume: at > 0,
        datasetName: c.data.name,
        preprocess: 'images' in data.train ? preprocessOf(data.train) : undefined,
        onStep: (s) => appendFileSync(logPath, JSON.stringify(s) + '\n'),
      });
      addTrainTime(dir, r.seconds, at > 0);
      log({ event: 'sub-done', sub: entry.id, steps: r.steps, seconds: r.seconds });
      if (noEval) {
        console.log(`  ${entry.id}: trained (${r.seconds.toFixed(1)} s)`);
        continue;
      }
      const lock = acquireRunLock(dir, 'eval');
      try {
        const own = evaluateInto(dir, model, sub, data, sc, title);
        rows.push(...own);
        console.log(`  ${entry.id}: ${(100 * own[0].accuracy).toFixed(2)}% (${r.seconds.toFixed(1)} s)`);
      } finally {
        lock.release();
      }
    } finally {
      model.dispose();
    }
  }
  const seconds = grid.entries.reduce((s, e) => s + trainTime(subRunDir(runDir, e.id)), 0);
  log({ event: 'done', seconds });
  writeFileAtomic(join(runDir, 'train_time.json'), JSON.stringify({ seconds }) + '\n');
  if (noEval) return 0;
  writeEval(runDir, ofGrid(rows, grid), title);
  console.log(formatTable(ofGrid(rows, grid)));
  console.log(`wrote ${join(runDir, 'eval.json')}, eval.csv, plot.svg`);
  return 0;
}

/** A sub-run's rows give FLOPs as a fraction of its own model; the combined table, of the grid's largest. */
const ofGrid = (rows: EvalRow[], grid: Grid): EvalRow[] =>
  rows.map((r) => ({ ...r, flopsFraction: r.flops / grid.largest.cost.flops }));

const trainTime = (dir: string): number =>
  existsSync(join(dir, 'train_time.json'))
    ? (JSON.parse(readFileSync(join(dir, 'train_time.json'), 'utf8')) as { seconds: number }).seconds
    : 0;

/** Evaluates the stored model of one sub-run (BN recalibrated), writing its eval.json. */
async function evaluateSubRun(dir: string, sc: RunConfig, data: RunData): Promise<EvalRow[]> {
  if (!hasCheckpoint(dir)) {
    const parent = join(dir, '..');
    throw new Error(
      `${dir} holds no checkpoint: that sub-model of the individual run is not trained yet; continue it with 'sortednet train --run ${parent} --resume'`,
    );
  }
  const lock = acquireRunLock(dir, 'eval');
  try {
    const { model, meta } = await loadCheckpoint(dir);
    try {
      return evaluateInto(dir, model, new Grid(meta.grid, model), data, sc, runTitle(sc, meta.model.family));
    } finally {
      model.dispose();
    }
  } finally {
    lock.release();
  }
}

/** `sortednet eval` on an individual run: each stored sub-model, then the combined table. */
export async function evaluateIndividualRun(runDir: string, c: RunConfig): Promise<number> {
  const data = loadRunData(c);
  const { spec, grid: gridSpec } = modelSpecFor(c, data);
  const probe = buildModel(spec, c.train.seed ?? 1);
  const grid = new Grid(gridSpec, probe);
  probe.dispose();
  console.log(
    `evaluating the ${grid.size} models of the individual run ${runDir} on ${data.test.n} test examples…`,
  );
  const rows: EvalRow[] = [];
  for (const e of grid.entries) {
    rows.push(
      ...(await evaluateSubRun(subRunDir(runDir, e.id), { ...c, grid: singleEntryGrid(e.sub) }, data)),
    );
  }
  writeEval(runDir, ofGrid(rows, grid), runTitle(c, spec.family));
  console.log(formatTable(ofGrid(rows, grid)));
  console.log(`wrote ${join(runDir, 'eval.json')}, eval.csv, plot.svg`);
  return 0;
}
