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
import { basename, dirname, join } from 'node:path';
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
import {
  checkpointSealPath,
  checkSeal,
  describeChange,
  formatLatest,
  LATEST,
  matchesSeal,
  parseLatest,
  RUN_CONFIG_SEAL,
  sealOf,
  type Latest,
  type Seal,
} from './seal.js';

export { LATEST } from './seal.js';
export { CHECKPOINT_FORMAT, type CheckpointMeta, type SaveInput } from './checkpoint_codec.js';

export const CHECKPOINTS = 'checkpoints';
/** The run's configuration, in the run folder; sealed in `latest` with the checkpoint. */
export const RUN_CONFIG = 'run.json';
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

/**
 * `latest` as written (src/io/seal.ts): undefined when missing or empty (a first save that never
 * finished, or removed by hand to fall back); throws naming the fault when it is damaged.
 */
function readLatest(root: string): Latest | undefined {
  let text: string;
  try {
    text = readFileSync(join(root, LATEST), 'utf8');
  } catch {
    return undefined;
  }
  // A `latest` from before seals (or written by hand): the name alone.
  if (/^step-\d+$/.test(text.trim())) return { name: text.trim(), seals: [] };
  if (text.trim() === '') return undefined;
  return parseLatest(text, join(root, LATEST));
}

/** How an error tells the user to accept a deliberate edit of the run in `runDir`. */
const acceptHint = (runDir: string) => `run 'sortednet seal --run ${runDir}' to accept the edit`;

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
 * message) the newest complete step folder; a step folder or a flat-layout folder as itself. Its
 * checkpoint.json is checked against the seal in `latest` (throws naming the changed fields).
 */
export function checkpointDir(runDir: string): string {
  const dir = resolveCheckpointDir(runDir);
  verifyCheckpointJson(dir);
  return dir;
}

function resolveCheckpointDir(runDir: string): string {
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
  const latest = readLatest(root)?.name;
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

/**
 * Checks a step folder's checkpoint.json against its seal in `checkpoints/latest`. A folder `latest`
 * does not seal (a flat layout, a run saved by an older sortednet) is read as it is, with a notice.
 */
function verifyCheckpointJson(dir: string): void {
  const root = dirname(dir);
  if (basename(root) !== CHECKPOINTS || !STEP_FOLDER.test(basename(dir))) return;
  const latestPath = join(root, LATEST);
  const latest = readLatest(root);
  if (!latest) return; // resolveCheckpointDir said which folder it fell back to
  const runDir = dirname(root);
  if (latest.seals.length === 0) {
    tell(
      `${latestPath} seals nothing (an older sortednet wrote it): edits of checkpoint.json or run.json are not detected; 'sortednet seal --run ${runDir}' adds the seals`,
    );
    return;
  }
  const path = join(dir, 'checkpoint.json');
  const seal = latest.seals.find((s) => s.path === checkpointSealPath(basename(dir)));
  if (!seal) {
    tell(`${path} is not sealed by ${latestPath} (left by an interrupted save?); its content is not checked`);
    return;
  }
  checkSeal(readFileSync(path), seal, path, latestPath, acceptHint(runDir));
}

/**
 * Checks the bytes of `runDir`/run.json against its seal in `checkpoints/latest`; throws naming the
 * changed fields. Nothing to check in a run without a sealed checkpoint (none saved yet, or saved
 * by an older sortednet).
 */
export function verifyRunConfig(runDir: string, bytes: Uint8Array): void {
  const root = join(runDir, CHECKPOINTS);
  const seals = readLatest(root)?.seals.filter((s) => s.path === RUN_CONFIG_SEAL) ?? [];
  if (seals.length === 0 || seals.some((s) => matchesSeal(bytes, s))) return;
  checkSeal(bytes, seals[seals.length - 1], join(runDir, RUN_CONFIG), join(root, LATEST), acceptHint(runDir));
}

/**
 * Writes `runDir`/run.json atomically and keeps it sealed: while it changes, `latest` seals both
 * the old and the new content, so a kill between the writes leaves a file one of them matches.
 */
export function writeRunConfig(runDir: string, text: string): void {
  const path = join(runDir, RUN_CONFIG);
  const bytes = new TextEncoder().encode(text);
  const root = join(runDir, CHECKPOINTS);
  let latest: Latest | undefined;
  try {
    latest = readLatest(root);
  } catch {
    latest = undefined; // a damaged `latest` is reported where it is read; it seals nothing here
  }
  if (!latest || latest.seals.length === 0) {
    writeFileAtomic(path, bytes);
    return;
  }
  const next = sealOf(RUN_CONFIG_SEAL, bytes);
  const others = latest.seals.filter((s) => s.path !== RUN_CONFIG_SEAL);
  const old = latest.seals.filter((s) => s.path === RUN_CONFIG_SEAL);
  const seal = (run: Seal[]) =>
    writeFileAtomic(join(root, LATEST), formatLatest({ name: latest.name, seals: [...others, ...run] }));
  if (old.length === 1 && old[0].sha256 === next.sha256) {
    writeFileAtomic(path, bytes);
    return;
  }
  seal([...old.filter((s) => s.sha256 !== next.sha256), next]);
  writeFileAtomic(path, bytes);
  seal([next]);
}

/** The seals of run.json for a new `latest`: its current content, unless it was edited unsealed. */
function runConfigSeals(runDir: string, prev: Latest | undefined): Seal[] {
  const sealed = prev?.seals.filter((s) => s.path === RUN_CONFIG_SEAL) ?? [];
  const path = join(runDir, RUN_CONFIG);
  if (!existsSync(path)) return sealed;
  const bytes = readFileSync(path);
  // An edit made since the last seal stays noticeable: the save does not bless it.
  if (sealed.length && !sealed.some((s) => matchesSeal(bytes, s))) return sealed;
  return [sealOf(RUN_CONFIG_SEAL, bytes)];
}

/** A file that was accepted by `sealRun`, and what had changed in it. */
export interface AcceptedEdit {
  file: string;
  change: string;
}

/**
 * Accepts deliberate edits: re-seals the checkpoint.json of every complete step folder (each must
 * still be a valid checkpoint.json) and run.json as they are now. The caller checks run.json's
 * schema first. Returns the files whose seal changed.
 */
export function sealRun(runDir: string): AcceptedEdit[] {
  const root = join(runDir, CHECKPOINTS);
  const complete = listCheckpoints(runDir);
  if (complete.length === 0)
    throw new Error(`${root} holds no complete step folder: there is no checkpoint to seal`);
  let prev: Latest | undefined;
  let damaged = false;
  try {
    prev = readLatest(root);
  } catch {
    damaged = true;
  }
  const current = complete.find((c) => c.name === prev?.name) ?? complete[complete.length - 1];
  const accepted: AcceptedEdit[] = [];
  if (damaged || !prev)
    accepted.push({ file: join(root, LATEST), change: `rewritten, naming ${current.name}` });
  const seals: Seal[] = [];
  const consider = (path: string, sealPath: string, bytes: Uint8Array) => {
    const old = prev?.seals.filter((s) => s.path === sealPath) ?? [];
    if (!old.some((s) => matchesSeal(bytes, s))) {
      const text = new TextDecoder().decode(bytes);
      accepted.push({
        file: path,
        change: old.length ? describeChange(text, old[old.length - 1]) : 'sealed (it was not before)',
      });
    }
    seals.push(sealOf(sealPath, bytes));
  };
  for (const c of [current, ...complete.filter((c) => c !== current).reverse()]) {
    const path = join(c.dir, 'checkpoint.json');
    const bytes = readFileSync(path);
    parseCheckpointMeta(new TextDecoder().decode(bytes), path); // never seal a broken one
    consider(path, checkpointSealPath(c.name), bytes);
  }
  const runPath = join(runDir, RUN_CONFIG);
  if (existsSync(runPath)) consider(runPath, RUN_CONFIG_SEAL, readFileSync(runPath));
  writeFileAtomic(join(root, LATEST), formatLatest({ name: current.name, seals }));
  return accepted;
}

/** A checkpoint save that failed; what was kept is in the message. */
export class SaveError extends Error {}

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
  const prev = readLatest(root);
  if (existsSync(dir) && prev?.name === name) {
    throw new Error(`${dir} already holds the current checkpoint (step ${input.step}); not overwriting it`);
  }
  const { files } = encodeCheckpoint(input);
  const tmp = tmpName(dir);
  try {
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
  } catch (e) {
    // The partial folder goes at once: on a full disk it holds the space the next save needs.
    rmSync(tmp, { recursive: true, force: true });
    throw saveFailed(e, runDir, input.step, prev);
  }
  // Keep the newest `keep` folders up to this one; later ones belong to a history that was abandoned.
  const all = listCheckpoints(runDir);
  const older = all.filter((c) => c.step < input.step);
  const kept = older.slice(Math.max(0, older.length - (keep - 1)));
  const drop = [
    ...older.slice(0, Math.max(0, older.length - (keep - 1))),
    ...all.filter((c) => c.step > input.step),
  ];
  // `latest` seals the new checkpoint.json, those of the kept folders as they were sealed, and run.json.
  const seals = [sealOf(checkpointSealPath(name), files.get('checkpoint.json')!)];
  for (const c of kept.reverse()) {
    const s = prev?.seals.find((x) => x.path === checkpointSealPath(c.name));
    if (s) seals.push(s);
  }
  seals.push(...runConfigSeals(runDir, prev));
  try {
    writeFileAtomic(join(root, LATEST), formatLatest({ name, seals }));
  } catch (e) {
    throw saveFailed(e, runDir, input.step, prev);
  }
  opts.onStage?.('latest');
  for (const c of drop) removeTree(c.dir);
  opts.onStage?.('pruned');
  return dir;
}

/** The error of a save that did not complete: what failed, and what is kept. */
function saveFailed(e: unknown, runDir: string, step: number, prev: Latest | undefined): SaveError {
  const last = prev && existsSync(join(runDir, CHECKPOINTS, prev.name, 'checkpoint.json'));
  const kept = last
    ? `the last good checkpoint, ${join(runDir, CHECKPOINTS, prev.name)}, is intact`
    : 'no checkpoint was saved before it';
  const err = new SaveError(
    `could not save the checkpoint of step ${step} in ${join(runDir, CHECKPOINTS)}: ${(e as Error).message}. Nothing of it was kept; ${kept}. Free some space (or fix the cause), then resume the run (sortednet train --run ${runDir} --resume)`,
    { cause: e },
  );
  return err;
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
