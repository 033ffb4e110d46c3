/**
 * A checkpoint is a folder:
 *   model.safetensors      the shared weights, by stable parameter name (readable by Python)
 *   bn_stats.safetensors   BatchNorm statistics per sub-model: `<subId>|<module>.mean/.variance`
 *   optimizer.safetensors  optimizer state (for --resume)
 *   checkpoint.json        architecture, grid, training config and state, sha256 of each file
 * Each file is written atomically and checkpoint.json last, so a crash mid-save leaves the
 * previous checkpoint.json pointing at hashes that no longer match: loading then fails loudly
 * instead of mixing two checkpoints.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildModel, type ModelSpec, type SortedModel } from '../models/index.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import type { GridSpec } from '../sorted/grid.js';
import type { TrainConfig } from '../train/config.js';
import { decodeSafetensors, encodeSafetensors, type NamedArray } from './safetensors.js';
import { writeFileAtomic } from './atomic.js';

export const CHECKPOINT_FORMAT = 'sortednet-checkpoint/1';

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  model: ModelSpec;
  grid: GridSpec;
  train?: TrainConfig;
  /** Optimizer steps done. */
  step: number;
  seed: number;
  dataset?: string;
  files: Record<string, string>;
  createdAt: string;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function toNamed(t: tf.Tensor): NamedArray {
  return { dtype: 'F32', shape: t.shape.slice(), data: t.dataSync() as Float32Array };
}

export interface SaveInput {
  model: SortedModel;
  grid: GridSpec;
  step: number;
  seed: number;
  train?: TrainConfig;
  dataset?: string;
  optimizerState?: Map<string, tf.Tensor>;
}

export function saveCheckpoint(dir: string, input: SaveInput): void {
  mkdirSync(dir, { recursive: true });
  const files: Record<string, Uint8Array> = {};
  files['model.safetensors'] = encodeSafetensors(
    new Map(input.model.namedParameters().map(([n, v]) => [n, toNamed(v)])),
    { format: 'pt', producer: 'sortednet' },
  );
  const bn = new Map<string, NamedArray>();
  const counts: Record<string, string> = {};
  for (const [name, m] of namedBatchNorms(input.model)) {
    for (const [key, s] of m.stats) {
      bn.set(`${key}|${name}.mean`, toNamed(s.mean));
      bn.set(`${key}|${name}.variance`, toNamed(s.variance));
      counts[`${key}|${name}`] = String(s.count);
    }
  }
  files['bn_stats.safetensors'] = encodeSafetensors(bn, counts);
  if (input.optimizerState) {
    files['optimizer.safetensors'] = encodeSafetensors(
      new Map([...input.optimizerState].map(([k, t]) => [k, toNamed(t)])),
    );
  }
  const hashes: Record<string, string> = {};
  for (const [f, bytes] of Object.entries(files)) {
    writeFileAtomic(join(dir, f), bytes);
    hashes[f] = sha256(bytes);
  }
  const meta: CheckpointMeta = {
    format: CHECKPOINT_FORMAT,
    model: { family: input.model.family, config: input.model.config } as ModelSpec,
    grid: input.grid,
    train: input.train,
    step: input.step,
    seed: input.seed,
    dataset: input.dataset,
    files: hashes,
    createdAt: new Date().toISOString(),
  };
  writeFileAtomic(join(dir, 'checkpoint.json'), JSON.stringify(meta, null, 2) + '\n');
}

function readVerified(dir: string, file: string, meta: CheckpointMeta): Uint8Array {
  const path = join(dir, file);
  if (!existsSync(path)) throw new Error(`checkpoint ${dir}: ${file} is missing`);
  const bytes = readFileSync(path);
  if (sha256(bytes) !== meta.files[file]) {
    throw new Error(
      `checkpoint ${dir}: ${file} does not match checkpoint.json (corrupt, or from another save); not loading`,
    );
  }
  return bytes;
}

export function readCheckpointMeta(dir: string): CheckpointMeta {
  const path = join(dir, 'checkpoint.json');
  if (!existsSync(path))
    throw new Error(`no checkpoint in ${dir}: ${path} not found (train first, or check --run)`);
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`checkpoint ${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new Error(`checkpoint ${path}: format '${meta.format}' is not '${CHECKPOINT_FORMAT}'`);
  }
  return meta;
}

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  model: SortedModel;
  optimizerState: Map<string, tf.Tensor>;
}

/** Loads weights into `into` if given (shapes must match), else builds the model from the metadata. */
export function loadCheckpoint(dir: string, into?: SortedModel): LoadedCheckpoint {
  const meta = readCheckpointMeta(dir);
  const model = into ?? buildModel(meta.model, meta.seed);
  if (into && JSON.stringify(into.config) !== JSON.stringify(meta.model.config)) {
    throw new Error(`checkpoint ${dir}: its architecture differs from the model being loaded into`);
  }
  const { tensors } = decodeSafetensors(
    readVerified(dir, 'model.safetensors', meta),
    `${dir}/model.safetensors`,
  );
  for (const [name, v] of model.namedParameters()) {
    const t = tensors.get(name);
    if (!t) throw new Error(`checkpoint ${dir}: parameter '${name}' is missing`);
    if (t.shape.join() !== v.shape.join()) {
      throw new Error(`checkpoint ${dir}: '${name}' has shape [${t.shape}], model expects [${v.shape}]`);
    }
    v.assign(tf.tensor(t.data, t.shape));
  }
  const bn = decodeSafetensors(
    readVerified(dir, 'bn_stats.safetensors', meta),
    `${dir}/bn_stats.safetensors`,
  );
  const mods = new Map(namedBatchNorms(model));
  for (const m of mods.values()) m.resetStats();
  for (const [name, t] of bn.tensors) {
    const m = /^(.*)\|(.*)\.(mean|variance)$/.exec(name);
    if (!m || m[3] !== 'mean') continue;
    const mod = mods.get(m[2]);
    const variance = bn.tensors.get(`${m[1]}|${m[2]}.variance`);
    if (!mod || !variance)
      throw new Error(`checkpoint ${dir}: BN statistics '${name}' match no BatchNorm of the model`);
    mod.stats.set(m[1], {
      mean: tf.tensor1d(t.data as Float32Array),
      variance: tf.tensor1d(variance.data as Float32Array),
      count: Number(bn.metadata[`${m[1]}|${m[2]}`] ?? 1),
    });
  }
  const optimizerState = new Map<string, tf.Tensor>();
  if (meta.files['optimizer.safetensors']) {
    const o = decodeSafetensors(
      readVerified(dir, 'optimizer.safetensors', meta),
      `${dir}/optimizer.safetensors`,
    );
    for (const [k, t] of o.tensors) optimizerState.set(k, tf.tensor(t.data, t.shape));
  }
  return { meta, model, optimizerState };
}
