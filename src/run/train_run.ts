/**
 * A training run in a folder, crash-safe: the trainer (src/train/) owns no files, this driver
 * does. It holds the folder's lock, clears what an interrupted save left, resumes from the last
 * complete checkpoint, and saves the trainer's state atomically every `checkpointEvery` steps.
 * Kill it at any moment: `resume` continues byte-identically to an uninterrupted run.
 */
import { readFileSync } from 'node:fs';
import type { SortedModel } from '../models/model.js';
import type { Grid } from '../sorted/grid.js';
import type { TrainConfig } from '../train/config.js';
import {
  DivergenceError,
  train,
  type TrainData,
  type TrainOptions,
  type TrainResult,
  type TrainState,
} from '../train/trainer.js';
import {
  checkpointDir,
  hasCheckpoint,
  loadCheckpoint,
  removeStale,
  saveCheckpoint,
  SaveError,
  type SaveOptions,
} from '../io/checkpoint.js';
import type { CheckpointMeta, Preprocess } from '../io/checkpoint_codec.js';
import { acquireRunLock } from '../io/lock.js';
import { writeFileAtomic } from '../io/atomic.js';
import { copyInitWeights, readInitSource } from './init_from.js';

export interface RunOptions extends Omit<TrainOptions, 'start' | 'onCheckpoint'> {
  /** Continue from the folder's last checkpoint (a folder without one starts at step 0). */
  resume?: boolean;
  datasetName?: string;
  /** What a raw input needs before the model (normalisation, image size, class names): saved in checkpoints. */
  preprocess?: Preprocess;
  /** Further files saved in every checkpoint (an LM's tokenizer.json). */
  extraFiles?: Record<string, Uint8Array>;
  /** Passed to each checkpoint save (tests kill the process at each stage of a save). */
  onSaveStage?: SaveOptions['onStage'];
  /**
   * Start from the weights of this run or checkpoint folder instead of `model`'s initialisation
   * (sorted fine-tuning of a pre-trained model; init_from.ts). Used when the run starts at step 0
   * (also when a resume finds no checkpoint yet); a resumed run continues from its own.
   */
  initFrom?: string;
}

/** Trains `model` with its checkpoints in `runDir`; see the module comment. */
export async function trainRun(
  runDir: string,
  model: SortedModel,
  grid: Grid,
  data: TrainData,
  config: TrainConfig,
  options: RunOptions = {},
): Promise<TrainResult> {
  const { resume, datasetName, preprocess, extraFiles, onSaveStage, initFrom, ...trainOptions } = options;
  const lock = acquireRunLock(runDir, 'train');
  try {
    for (const p of removeStale(runDir)) console.warn(`removed ${p} (left by an interrupted write)`);
    let start: TrainState | undefined;
    if (resume && hasCheckpoint(runDir)) {
      const ck = await loadCheckpoint(runDir, model, { calibrated: false });
      checkResumable(ck.meta, config, ck.dir);
      start = {
        step: ck.meta.step,
        optimizerStep: ck.meta.optimizerStep ?? ck.meta.step,
        optimizerState: ck.optimizerState,
      };
    } else if (resume) {
      console.warn(`${runDir} holds no checkpoint yet (killed before the first save); starting at step 0`);
    } else if (hasCheckpoint(runDir)) {
      throw new Error(`${runDir} already holds checkpoints; resume it, or train into another folder`);
    }
    if (!start && initFrom !== undefined) {
      const source = await readInitSource(initFrom);
      try {
        copyInitWeights(model, source.model, initFrom);
      } finally {
        source.model.dispose();
      }
    }
    const save = (state: TrainState) =>
      saveCheckpoint(
        runDir,
        {
          model,
          grid: grid.spec,
          step: state.step,
          optimizerStep: state.optimizerStep,
          seed: config.seed,
          train: config,
          dataset: datasetName,
          preprocess,
          extraFiles,
          optimizerState: state.optimizerState,
        },
        { keep: config.keepCheckpoints, onStage: onSaveStage },
      );
    try {
      return await train(model, grid, data, config, { ...trainOptions, start, onCheckpoint: save });
    } catch (e) {
      if (e instanceof DivergenceError) throw new DivergenceError(`${e.message} ${lastGood(runDir)}`);
      // A file the step's callbacks write (the log) failed, e.g. a full disk: say what is kept.
      if (!(e instanceof SaveError) && typeof (e as NodeJS.ErrnoException).code === 'string') {
        throw new Error(
          `${(e as Error).message}. Training stopped. ${lastGood(runDir)} Free some space (or fix the cause), then resume the run (sortednet train --run ${runDir} --resume)`,
          { cause: e },
        );
      }
      throw e;
    }
  } finally {
    lock.release();
  }
}

/** Where the last good checkpoint is, for the divergence message. */
function lastGood(runDir: string): string {
  try {
    return `The last checkpoint, ${checkpointDir(runDir)}, is intact.`;
  } catch {
    return 'No checkpoint was written before it.';
  }
}

/** Fields that may differ when resuming: they change neither the steps done nor those to come. */
const RESUME_MAY_CHANGE = new Set<keyof TrainConfig>([
  'steps',
  'checkpointEvery',
  'keepCheckpoints',
  'nonFinite',
]);

const canonical = (v: unknown): string =>
  JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  ) ?? 'undefined';

/** A resume continues the same run: other settings would make the result neither run. */
function checkResumable(meta: CheckpointMeta, config: TrainConfig, dir: string): void {
  if (meta.step > config.steps) {
    throw new Error(
      `${dir} is at step ${meta.step}, beyond the ${config.steps} steps asked for; give more steps`,
    );
  }
  if (!meta.train) return;
  const saved = meta.train as unknown as Record<string, unknown>;
  const now = config as unknown as Record<string, unknown>;
  const differ = [...new Set([...Object.keys(saved), ...Object.keys(now)])].filter(
    (k) =>
      !RESUME_MAY_CHANGE.has(k as keyof TrainConfig) &&
      saved[k] !== undefined &&
      canonical(saved[k]) !== canonical(now[k]),
  );
  if (differ.length) {
    throw new Error(
      `cannot resume ${dir} with different settings: ${differ
        .map((k) => `${k} ${canonical(saved[k])} → ${canonical(now[k])}`)
        .join(', ')}; only the step count and checkpointing may change (train into a new folder instead)`,
    );
  }
}

/**
 * Cuts a run's log (one JSON object per line, in order) back to where a resume starts: everything
 * from the first line past `step` goes, so that no step appears twice and no event of the abandoned
 * stretch remains; a torn line (the writer was killed mid-append) ends the log too.
 */
export function truncateLog(path: string, step: number): void {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return;
  }
  const lines = text.split('\n').filter((l) => l !== '');
  const past = (line: string) => {
    try {
      const rec = JSON.parse(line) as { step?: unknown };
      return typeof rec.step === 'number' && rec.step > step;
    } catch {
      return true;
    }
  };
  const cut = lines.findIndex(past);
  if (cut === -1) return;
  writeFileAtomic(
    path,
    lines
      .slice(0, cut)
      .map((l) => l + '\n')
      .join(''),
  );
}
