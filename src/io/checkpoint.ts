/**
 * Checkpoints in a run folder, crash-safe. Each save writes a complete new step folder under a
 * temporary name (every file fsync'd), renames it into place, then atomically replaces the small
 * pointer file `latest`; only after that are old step folders pruned. A kill at any moment leaves
 * `latest` naming a complete checkpoint (or, before the first save finished, none).
 *
 *   RUN/checkpoints/step-000400/   checkpoint.json, model.safetensors, bn_stats.safetensors,
 *                                  optimizer.safetensors, extra files (tokenizer.json…), and
 *                                  bn_calibrated.safetensors once evaluated
 *   RUN/checkpoints/latest         the current step folder's name, one line
 *
 * Readers also accept a step folder itself, and the older flat layout (checkpoint.json directly
 * in the run folder).
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { SortedModel } from '../models/index.js';
import { fsyncDir, isTmpName, removeTree, tmpName, writeFileAtomic, writeFileDurable } from './atomic.js';
import {
  CALIBRATION_FILE,
  decodeCheckpoint,
  encodeCalibration,
  encodeCheckpoint,
  encodeWeights,
  parseCheckpointMeta,
  type CheckpointMeta,
  type SaveInput,
} from './checkpoint_codec.js';
import { sha256Hex } from './sha256.js';

export { CHECKPOINT_FORMAT, type CheckpointMeta, type SaveInput } from './checkpoint_codec.js';

export const CHECKPOINTS = 'checkpoints';
export const LATEST = 'latest';
/** Step folders kept by default: the newest and the one before it. */
export const DEFAULT_KEEP = 2;

/** `step-000400`: zero-padded so that a listing sorts by step (longer numbers still parse). */
export const stepFolderName = (step: number): string => `step-${String(step).padStart(6, '0')}`;

const STEP_FOLDER = /^step-(\d+)$/;

export interface StepFolder {
  step: number;
  name: string;
  dir: string;
}

/** The complete step folders of a run, oldest first (a folder without checkpoint.json is not one). */
export function listCheckpoints(runDir: string): StepFolder[] {
  const root = join(runDir, CHECKPOINTS);
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((name) => ({ name, m: STEP_FOLDER.exec(name) }))
    .filter(({ name, m }) => m && existsSync(join(root, name, 'checkpoint.json')))
    .map(({ name, m }) => ({ step: Number(m![1]), name, dir: join(root, name) }))
    .sort((a, b) => a.step - b.step);
}

/** The name `latest` holds, if it is readable and well-formed. */
function readLatest(root: string): string | undefined {
  try {
    const name = readFileSync(join(root, LATEST), 'utf8').trim();
    return STEP_FOLDER.test(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

const told = new Set<string>();
/** Fallbacks are announced once per process (several readers resolve the same folder). */
function tell(message: string): void {
  if (told.has(message)) return;
  told.add(message);
  console.warn(message);
}

/** Whether `runDir` holds a checkpoint in any layout (commands that start a run refuse such a folder). */
export function hasCheckpoint(runDir: string): boolean {
  return listCheckpoints(runDir).length > 0 || existsSync(join(runDir, 'checkpoint.json'));
}

/**
 * The folder holding the current checkpoint's files: the step folder `latest` names, else (with a
 * message) the newest complete step folder; a step folder or a flat-layout folder as itself.
 */
export function checkpointDir(runDir: string): string {
  const root = join(runDir, CHECKPOINTS);
  const complete = listCheckpoints(runDir);
  if (complete.length === 0) {
    if (existsSync(join(runDir, 'checkpoint.json'))) return runDir;
    throw new Error(
      existsSync(root)
        ? `no complete checkpoint in ${root} (the first save was interrupted?); train again, or check --run`
        : `no checkpoint in ${runDir}: neither ${root}/ nor ${join(runDir, 'checkpoint.json')} found (train first, or check --run)`,
    );
  }
  const latest = readLatest(root);
  const current = complete.find((c) => c.name === latest);
  if (current) {
    const newer = complete.filter((c) => c.step > current.step).map((c) => c.name);
    if (newer.length) {
      tell(
        `${root}: ${newer.join(', ')} newer than '${LATEST}' (${latest}) were left by an interrupted save; using ${latest} (the next save removes them)`,
      );
    }
    return current.dir;
  }
  const newest = complete[complete.length - 1];
  tell(
    latest === undefined
      ? `${join(root, LATEST)} is missing or unreadable; using the newest complete checkpoint, ${newest.name}`
      : `${join(root, LATEST)} names ${latest}, which is missing or incomplete; using the newest complete checkpoint, ${newest.name}`,
  );
  return newest.dir;
}

export interface SaveOptions {
  /** Step folders to keep, the new one included (default 2; at least 1). */
  keep?: number;
  /** Called after each stage of the save (tests kill the process here to check each is safe). */
  onStage?: (stage: 'written' | 'renamed' | 'latest' | 'pruned') => void;
}

/**
 * Saves a checkpoint as a new step folder and makes it current; returns its path. The folder
 * `latest` named before stays untouched until the new one is complete and current.
 */
export function saveCheckpoint(runDir: string, input: SaveInput, opts: SaveOptions = {}): string {
  const keep = opts.keep ?? DEFAULT_KEEP;
  if (!Number.isInteger(keep) || keep < 1)
    throw new Error(`saveCheckpoint: keep must be an integer ≥ 1, got ${keep}`);
  const root = join(runDir, CHECKPOINTS);
  mkdirSync(root, { recursive: true });
  const name = stepFolderName(input.step);
  const dir = join(root, name);
  if (existsSync(dir) && readLatest(root) === name) {
    throw new Error(`${dir} already holds the current checkpoint (step ${input.step}); not overwriting it`);
  }
  const { files } = encodeCheckpoint(input);
  const tmp = tmpName(dir);
  mkdirSync(tmp);
  for (const [f, bytes] of files) if (f !== 'checkpoint.json') writeFileDurable(join(tmp, f), bytes);
  writeFileDurable(join(tmp, 'checkpoint.json'), files.get('checkpoint.json')!);
  fsyncDir(tmp);
  opts.onStage?.('written');
  // A folder of this step that `latest` does not name is a leftover of an interrupted save.
  if (existsSync(dir)) removeTree(dir);
  renameSync(tmp, dir);
  fsyncDir(root);
  opts.onStage?.('renamed');
  writeFileAtomic(join(root, LATEST), name + '\n');
  opts.onStage?.('latest');
  // Keep the newest `keep` folders up to this one; later ones belong to a history that was abandoned.
  const all = listCheckpoints(runDir);
  const older = all.filter((c) => c.step < input.step);
  const drop = [
    ...older.slice(0, Math.max(0, older.length - (keep - 1))),
    ...all.filter((c) => c.step > input.step),
  ];
  for (const c of drop) removeTree(c.dir);
  opts.onStage?.('pruned');
  return dir;
}

/**
 * Removes what interrupted writes left in a run folder: `*.tmp-*` files and folders (in the run
 * folder and in checkpoints/) and step folders without checkpoint.json. Call it only while holding
 * the run folder's lock (src/io/lock.ts): another writer's temporary files would look stale.
 * Returns the removed paths.
 */
export function removeStale(runDir: string): string[] {
  const removed: string[] = [];
  for (const dir of [runDir, join(runDir, CHECKPOINTS)]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const incompleteStep =
        dir !== runDir && STEP_FOLDER.test(name) && !existsSync(join(path, 'checkpoint.json'));
      if (!isTmpName(name) && !incompleteStep) continue;
      if (incompleteStep) removeTree(path);
      else rmSync(path, { recursive: true, force: true });
      removed.push(path);
    }
  }
  return removed;
}

export function readCheckpointMeta(runDir: string): CheckpointMeta {
  const path = join(checkpointDir(runDir), 'checkpoint.json');
  return parseCheckpointMeta(readFileSync(path, 'utf8'), path);
}

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  model: SortedModel;
  optimizerState: Map<string, tf.Tensor>;
  extraFiles: Map<string, Uint8Array>;
  /** The folder the files were read from. */
  dir: string;
}

export interface LoadOptions {
  /** Use BN statistics from evaluation when present (default true); resuming training passes false. */
  calibrated?: boolean;
  /** Skip the optimizer state (inference). */
  skipOptimizer?: boolean;
}

/** Loads weights into `into` if given (shapes must match), else builds the model from the metadata. */
export async function loadCheckpoint(
  runDir: string,
  into?: SortedModel,
  opts: LoadOptions = {},
): Promise<LoadedCheckpoint> {
  const dir = checkpointDir(runDir);
  const path = join(dir, 'checkpoint.json');
  const meta = parseCheckpointMeta(readFileSync(path, 'utf8'), path);
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f)) : undefined);
  try {
    return { ...(await decodeCheckpoint(meta, read, dir, { into, ...opts })), dir };
  } catch (e) {
    const older = listCheckpoints(runDir).filter((c) => c.dir !== dir);
    if (older.length === 0) throw e;
    const prev = older[older.length - 1];
    throw new Error(
      `${(e as Error).message}\n(an older checkpoint is ${prev.dir}: move ${basename(dir)} out of ${join(runDir, CHECKPOINTS)} to fall back to it)`,
      { cause: e },
    );
  }
}

/**
 * Stores the model's BN statistics (recalibrated by evaluation) beside the current checkpoint's
 * files, atomically; weights, optimizer state and checkpoint.json stay as they are. The model's
 * weights must be the checkpoint's (checked by hash). Returns the file's path.
 */
export function saveCalibration(runDir: string, model: SortedModel): string {
  const dir = checkpointDir(runDir);
  const meta = parseCheckpointMeta(
    readFileSync(join(dir, 'checkpoint.json'), 'utf8'),
    join(dir, 'checkpoint.json'),
  );
  const weights = encodeWeights(model);
  if (sha256Hex(weights) !== meta.files['model.safetensors']) {
    throw new Error(`the model's weights are not those of ${dir}; not storing its BN statistics there`);
  }
  const path = join(dir, CALIBRATION_FILE);
  writeFileAtomic(path, encodeCalibration(model, meta));
  return path;
}
