/**
 * `sortednet train` without the command line: a run folder trained from a run config built of
 * defaults < a base (the demo's) < a --config file < options. Holds the folder's lock, resumes,
 * removes a folder it created when the run fails before training, and dispatches LM presets
 * (lm_run.ts) and individual runs (individual.ts). The command parses flags and prints.
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { engineDescription, initEngine, parseBackend } from '../engine/backend.js';
import { buildModel } from '../models/index.js';
import { Grid } from '../sorted/grid.js';
import { resolveTrainConfig, type TrainConfig, type TrainConfigInput } from '../train/config.js';
import { DivergenceError } from '../train/trainer.js';
import { trainRun, truncateLog } from './train_run.js';
import { hasCheckpoint, readCheckpointMeta, removeStale, writeRunConfig } from '../io/checkpoint.js';
import { acquireRunLock } from '../io/lock.js';
import { appendText } from '../io/atomic.js';
import { checkRunConfig, readRunConfig, type RunConfig } from './run_config.js';
import { isLmRun, trainLmRun } from './lm_run.js';
import { clampBatchSize, csvConfigFrom, fitModelToData } from './own_data.js';
import { preprocessOf } from '../deploy/preprocess.js';
import {
  freshFolder,
  loadRunData,
  modelSpecFor,
  resolvedRunConfig,
  readRunJson,
  runTitle,
  trainedSubRuns,
  addTrainTime,
  evaluateRun,
} from './run_folder.js';
import { FIXED_ON_RESUME, resumeChanges } from './resume_flags.js';
import { isIndividualParent, trainIndividual } from './individual.js';
import { initRecord, readInitSource } from './init_from.js';
import type { ModelSpec } from '../models/index.js';
import type { GridSpec } from '../sorted/grid.js';

export const DEFAULT_MODEL = 'resnet-small';

/** What `sortednet train` takes, by its flags' names (all optional). */
export interface TrainFolderOptions {
  run?: string;
  config?: string;
  model?: string;
  data?: string;
  strategy?: string;
  steps?: number;
  batchSize?: number;
  gacc?: number;
  lr?: number;
  optimizer?: string;
  seed?: number;
  trainSubset?: number;
  testSubset?: number;
  resume?: boolean;
  eval?: boolean;
  backend?: string;
  labelColumn?: string;
  delimiter?: string;
  checkpointEvery?: number;
  keepCheckpoints?: number;
  onNonFinite?: string;
  /** The sub-models (overrides the preset's, the --config file's and an --init-from source's grid). */
  grid?: GridSpec;
  /**
   * A run or checkpoint folder whose weights the new run starts from (its model spec comes along;
   * the full model keeps its BatchNorm statistics, sub-models calibrate their own).
   */
  initFrom?: string;
}

/** The flags that only decide how a run survives crashes; they may change on --resume. */
function setRecovery(t: TrainConfigInput, flags: TrainFolderOptions): void {
  if (flags.checkpointEvery !== undefined) t.checkpointEvery = flags.checkpointEvery;
  if (flags.keepCheckpoints !== undefined) t.keepCheckpoints = flags.keepCheckpoints;
  if (flags.onNonFinite !== undefined) t.nonFinite = flags.onNonFinite as TrainConfig['nonFinite'];
}

/** The run config from defaults < --config file < flags. */
export function runConfigFrom(flags: TrainFolderOptions, base: Partial<RunConfig> = {}): RunConfig {
  const file = flags.config !== undefined ? readRunConfig(flags.config) : {};
  const c: RunConfig = {
    model: DEFAULT_MODEL,
    data: { name: 'mnist' },
    train: {},
    ...base,
    ...file,
  };
  c.train = { ...(base.train ?? {}), ...(file.train ?? {}) };
  if (flags.model !== undefined) c.model = flags.model;
  if (flags.data !== undefined) c.data = { ...c.data, name: flags.data };
  const csv = csvConfigFrom(flags);
  if (csv) c.data = { ...c.data, csv };
  if (flags.trainSubset !== undefined) c.data = { ...c.data, trainSubset: flags.trainSubset };
  if (flags.testSubset !== undefined) c.data = { ...c.data, testSubset: flags.testSubset };
  const t = c.train;
  if (flags.strategy !== undefined) t.strategy = flags.strategy as TrainConfig['strategy'];
  const set = <K extends keyof TrainConfig>(k: K, v: TrainConfig[K] | undefined) =>
    v !== undefined && (t[k] = v);
  set('steps', flags.steps);
  set('batchSize', flags.batchSize);
  set('gAcc', flags.gacc);
  set('seed', flags.seed);
  setRecovery(t, flags);
  if (flags.lr !== undefined || flags.optimizer !== undefined) {
    t.optimizer = { ...(t.optimizer ?? { kind: 'adamw', lr: 3e-3 }) };
    if (flags.lr !== undefined) t.optimizer.lr = flags.lr;
    if (flags.optimizer !== undefined) t.optimizer.kind = flags.optimizer as 'sgd' | 'adamw';
  }
  if (flags.backend !== undefined) c.backend = parseBackend(flags.backend, '--backend');
  if (flags.grid !== undefined) c.grid = flags.grid;
  return c;
}

const canonical = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  ) ?? 'undefined';
const shown = (m: unknown) => (typeof m === 'string' ? m : canonical(m));

/** Whether a --model (or --config model) asks for what the source holds: the same preset, or fields it has. */
function sameModel(given: unknown, preset: string | undefined, spec: ModelSpec): boolean {
  if (typeof given === 'string') return given === preset;
  const g = given as { family?: string; config?: Record<string, unknown> };
  const have = spec.config as unknown as Record<string, unknown>;
  return (
    g.family === spec.family &&
    Object.entries(g.config ?? {}).every(([k, v]) => canonical(v) === canonical(have[k]))
  );
}

/**
 * The run config of a run started from `options.initFrom`: the source's model (its preset name or
 * its spec), data and grid serve as the defaults that a --config file and the flags override,
 * except the model: one that differs from the source's is refused, naming both.
 */
async function initFromConfig(
  options: TrainFolderOptions,
  base: Partial<RunConfig>,
): Promise<{ c: RunConfig; spec: ModelSpec }> {
  const from = options.initFrom!;
  await initEngine(options.backend !== undefined ? parseBackend(options.backend, '--backend') : 'wasm');
  const source = await readInitSource(from);
  source.model.dispose(); // only its description is needed here; trainRun copies the weights
  const run = existsSync(join(from, 'run.json')) ? readRunJson(from) : undefined;
  const preset = typeof run?.model === 'string' ? run.model : undefined;
  const model = preset ?? source.meta.model;
  const file = options.config !== undefined ? readRunConfig(options.config) : {};
  const given = options.model ?? file.model;
  if (given !== undefined && !sameModel(given, preset, source.meta.model))
    throw new Error(
      `--model ${shown(given)} conflicts with the model of --init-from ${from} (${shown(model)}); leave --model out: a run started from trained weights has their model`,
    );
  const data = run?.data ?? { name: source.meta.dataset ?? 'mnist' };
  const c = runConfigFrom(
    { ...options, model: undefined },
    { ...base, model, data, grid: run?.grid ?? source.meta.grid },
  );
  c.model = model;
  c.initFrom = initRecord(from, source);
  return { c, spec: source.meta.model };
}

/** The config fields in which `spec` (built for the data) differs from the source's, as "classes 2 (source 10)". */
function specChanges(spec: ModelSpec, source: ModelSpec): string[] {
  if (spec.family !== source.family) return [`family ${spec.family} (source ${source.family})`];
  const a = spec.config as unknown as Record<string, unknown>;
  const b = source.config as unknown as Record<string, unknown>;
  return [...new Set([...Object.keys(a), ...Object.keys(b)])]
    .filter((k) => canonical(a[k]) !== canonical(b[k]))
    .map((k) => `${k} ${shown(a[k])} (source ${shown(b[k])})`);
}

/**
 * Trains the run folder `options.run` (or a fresh folder named after `defaultRun`). A run that
 * fails before training leaves no folder behind; a diverged run (DivergenceError, rethrown) keeps
 * its checkpoints. Returns the exit code of the evaluation (0).
 */
export async function trainFolder(
  options: TrainFolderOptions,
  base: Partial<RunConfig> = {},
  defaultRun?: string,
): Promise<number> {
  const runDir = options.run ?? (defaultRun && freshFolder(defaultRun));
  if (!runDir) throw new Error('train needs --run DIR (the folder for checkpoints, logs and results)');
  const existed = existsSync(runDir);
  const lock = acquireRunLock(runDir, options.resume ? 'train --resume' : 'train');
  let failed = true;
  try {
    for (const p of removeStale(runDir)) console.warn(`removed ${p} (left by an interrupted write)`);
    const code = await trainInFolder(runDir, options, base);
    failed = false;
    return code;
  } catch (e) {
    if (e instanceof DivergenceError) failed = false;
    throw e;
  } finally {
    lock.release();
    // A run that failed before training leaves no folder behind (a killed one keeps its run.json).
    const left = existsSync(runDir) ? readdirSync(runDir) : [];
    if (!existed && failed && left.every((f) => f === 'run.json')) rmSync(runDir, { recursive: true });
  }
}

async function trainInFolder(
  runDir: string,
  flags: TrainFolderOptions,
  base: Partial<RunConfig>,
): Promise<number> {
  let c: RunConfig;
  let resumeStep = 0;
  let started = false;
  let sourceSpec: ModelSpec | undefined;
  if (flags.resume && flags.initFrom !== undefined)
    throw new Error(
      '--init-from starts a new run from trained weights; --resume continues a run from its own checkpoint: give one of them',
    );
  if (flags.resume) {
    if (!existsSync(join(runDir, 'run.json'))) {
      throw new Error(`--resume: ${join(runDir, 'run.json')} not found; nothing to resume`);
    }
    c = readRunJson(runDir);
    // The command the run was started with may be given again: only values that differ are refused.
    const given = Object.fromEntries(FIXED_ON_RESUME.map((k) => [k, flags[k as keyof TrainFolderOptions]]));
    const file = flags.config !== undefined ? readRunConfig(flags.config) : undefined;
    const changes = resumeChanges(
      given,
      runConfigFrom({ ...given, config: undefined } as TrainFolderOptions),
      c,
      file,
    );
    if (changes.length) {
      throw new Error(
        `--resume continues the run as it was set up; ${changes.join(', ')} cannot change (only --steps, --checkpoint-every, --keep-checkpoints, --on-non-finite, --backend); start a new --run instead`,
      );
    }
    if (flags.steps !== undefined && flags.steps !== c.train.steps) {
      console.log(
        `continuing to ${flags.steps} steps (was ${c.train.steps ?? 'the default'}): the learning-rate schedule is recomputed for the new length`,
      );
      c.train = { ...c.train, steps: flags.steps };
    }
    setRecovery(c.train, flags);
    if (flags.backend !== undefined) c.backend = parseBackend(flags.backend, '--backend');
    started = hasCheckpoint(runDir);
    if (started) {
      resumeStep = readCheckpointMeta(runDir).step;
      console.log(`resuming ${runDir} at step ${resumeStep}`);
    }
  } else {
    if (flags.initFrom !== undefined) ({ c, spec: sourceSpec } = await initFromConfig(flags, base));
    else c = runConfigFrom(flags, base);
    const taken = hasCheckpoint(runDir) ? runDir : trainedSubRuns(runDir)[0];
    if (taken) {
      throw new Error(
        `${taken} already holds a checkpoint; use --resume to continue ${runDir}, or another --run folder`,
      );
    }
    // The run's configuration is its first file, so that a run killed at any moment resumes (it is
    // written again below, resolved against the data).
    writeRunConfig(runDir, JSON.stringify(c, null, 2) + '\n');
  }
  if (isLmRun(c.model)) {
    // Language models: the tokenizer is trained first (or comes with the weights) and the metric is
    // perplexity (lm_run.ts).
    if (c.initFrom)
      console.log(`starting from the weights of ${c.initFrom.from} (step ${c.initFrom.step ?? '?'})`);
    await trainLmRun(runDir, c, {
      resume: flags.resume,
      noEval: flags.eval === false,
      initFrom: c.initFrom?.from,
    });
    return 0;
  }
  checkRunConfig(c, flags.resume ? join(runDir, 'run.json') : (flags.config ?? 'train'));
  let tc = resolveTrainConfig(c.train);
  await initEngine(c.backend ?? 'wasm');
  const data = loadRunData(c);
  // A resumed run that never saved a checkpoint may hold the configuration as first written.
  if ((!flags.resume || !started) && !c.initFrom)
    c = fitModelToData(
      c,
      data,
      flags.resume ? c.model !== DEFAULT_MODEL : flags.model !== undefined || flags.config !== undefined,
    );
  tc = clampBatchSize(tc, data.train.n);
  const { spec, grid: gridSpec } = modelSpecFor(c, data, flags.config);
  if (sourceSpec) {
    const changes = specChanges(spec, sourceSpec);
    if (changes.length)
      throw new Error(
        `--init-from ${flags.initFrom}: the data ${c.data.name} needs a model that differs from the source's in ${changes.join(', ')}; train on data of the source's shape`,
      );
  }
  c = resolvedRunConfig(c, spec, gridSpec); // run.json records the complete model spec
  mkdirSync(runDir, { recursive: true });
  writeRunConfig(runDir, JSON.stringify(c, null, 2) + '\n');
  const logPath = join(runDir, 'log.jsonl');
  // A resumed run repeats the steps after its checkpoint: their first log lines go.
  if (flags.resume) truncateLog(logPath, resumeStep);
  const log = (rec: object) => appendText(logPath, JSON.stringify(rec) + '\n');
  const title = runTitle(c, spec.family, tc.strategy);
  console.log(`run ${runDir}: ${title} on ${c.data.name} (${data.train.n} train / ${data.test.n} test)`);
  console.log(engineDescription());

  if (c.initFrom) {
    if (isIndividualParent(c))
      throw new Error(
        '--init-from with --strategy individual: individual runs train each sub-model from scratch; choose sorted, all-exits, sandwich or full-only',
      );
    console.log(`starting from the weights of ${c.initFrom.from} (step ${c.initFrom.step ?? '?'})`);
  }
  if (isIndividualParent(c)) {
    // Every sub-model trained alone from scratch, each a run of its own: the quality ceiling (N× cost).
    return trainIndividual(runDir, c, tc, data, spec, gridSpec, {
      resume: flags.resume === true,
      noEval: flags.eval === false,
      log,
    });
  }

  const model = buildModel(spec, tc.seed);
  const grid = new Grid(gridSpec, model);
  console.log(
    `${grid.size} sub-models, ${model.parameterCount()} shared parameters; ${tc.steps} steps × gAcc ${tc.gAcc} × batch ${tc.batchSize}`,
  );
  const r = await trainRun(runDir, model, grid, data.train, tc, {
    resume: flags.resume === true,
    datasetName: c.data.name,
    // Token sequences carry no image preprocessing (a classifier's tokenizer is bytes).
    preprocess: 'images' in data.train ? preprocessOf(data.train) : undefined,
    progress: true,
    onStep: log,
    initFrom: c.initFrom?.from,
  });
  log({ event: 'done', seconds: r.seconds });
  addTrainTime(runDir, r.seconds, flags.resume === true);
  console.log(
    `trained ${r.steps} steps in ${r.seconds.toFixed(1)} s (${(r.samples / r.seconds).toFixed(0)} samples/s), final loss ${r.finalLoss.toFixed(4)}`,
  );
  if (flags.eval === false) return 0;
  return evaluateRun(runDir, model, grid, data, c, title);
}
