/**
 * The checkpoint format without a file system: a model (+ BN statistics per sub-model, optimizer
 * state) to named byte blobs and back. Node (src/io/checkpoint.ts) writes the blobs to a folder;
 * a browser fetches them. Every blob is checked against the sha256 that checkpoint.json records.
 *
 *   model.safetensors      the shared weights, by stable parameter name (readable by Python)
 *   bn_stats.safetensors   BatchNorm statistics per sub-model: `<subId>|<module>.mean/.variance`
 *   buffers.safetensors    module buffers by stable name (PAD masks, compact layers' index tables);
 *                          only written when the model has buffers
 *   optimizer.safetensors  optimizer state (for --resume)
 *   checkpoint.json        architecture, grid, training config and state, sha256 of each file
 *
 * Evaluation adds one optional file and never touches the others (so `--resume` stays exact):
 *   bn_calibrated.safetensors  BN statistics recalibrated per sub-model after training, bound to
 *                              the weights by their sha256 and checked by the hash of its own data
 */
import * as tf from '@tensorflow/tfjs-core';
import { buildModel, type ModelSpec, type SortedModel } from '../models/index.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import type { GridSpec } from '../sorted/grid.js';
import type { TrainConfig } from '../train/config.js';
import { decodeSafetensors, encodeSafetensors, type NamedArray } from './safetensors.js';
import { sha256Hex } from './sha256.js';

export const CHECKPOINT_FORMAT = 'sortednet-checkpoint/1';

/** What a raw input needs before the model sees it; travels with the weights. */
export interface Preprocess {
  /** Per-feature (or per-channel) mean and std subtracted/divided before the model. */
  mean?: number[];
  std?: number[];
  /** Images: the model's input size and channels. */
  image?: { height: number; width: number; channels: number };
  /** Tabular: the feature names, in order. */
  features?: string[];
  /** Class names by class index. */
  classes?: string[];
  /** LMs: the tokenizer file name inside the checkpoint (a Hugging Face tokenizer.json). */
  tokenizer?: string;
}

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  model: ModelSpec;
  grid: GridSpec;
  train?: TrainConfig;
  /** Training steps done. */
  step: number;
  /** Updates the optimizer applied, when fewer than `step` (steps skipped for a non-finite loss). */
  optimizerStep?: number;
  seed: number;
  dataset?: string;
  preprocess?: Preprocess;
  files: Record<string, string>;
  createdAt: string;
}

function toNamed(t: tf.Tensor): NamedArray {
  return { dtype: 'F32', shape: t.shape.slice(), data: t.dataSync() as Float32Array };
}

function bufferToNamed(t: tf.Tensor): NamedArray {
  if (t.dtype === 'int32') return { dtype: 'I32', shape: t.shape.slice(), data: t.dataSync() as Int32Array };
  return toNamed(t);
}

export interface SaveInput {
  model: SortedModel;
  grid: GridSpec;
  step: number;
  optimizerStep?: number;
  seed: number;
  train?: TrainConfig;
  dataset?: string;
  preprocess?: Preprocess;
  optimizerState?: Map<string, tf.Tensor>;
  /** Further files to carry (e.g. tokenizer.json), hashed like the others. */
  extraFiles?: Record<string, Uint8Array>;
}

/** How model.safetensors lays out weights where it differs from PyTorch (TensorFlow.js's layouts). */
export const WEIGHTS_LAYOUT = 'conv kh,kw,in,out (HWIO); depthwise kh,kw,channels,1; linear out,in';

/** model.safetensors: the shared weights by parameter name (Python reads it as a PyTorch state dict). */
export function encodeWeights(model: SortedModel): Uint8Array {
  return encodeSafetensors(new Map(model.namedParameters().map(([n, v]) => [n, toNamed(v)])), {
    format: 'pt',
    producer: 'sortednet',
    'sortednet.layout': WEIGHTS_LAYOUT,
  });
}

/** The checkpoint as named blobs; `checkpoint.json` (with every other blob's hash) is among them. */
export function encodeCheckpoint(input: SaveInput): { meta: CheckpointMeta; files: Map<string, Uint8Array> } {
  const files = new Map<string, Uint8Array>();
  files.set('model.safetensors', encodeWeights(input.model));
  files.set('bn_stats.safetensors', encodeBnStats(input.model));
  const buffers = input.model.namedBuffers();
  if (buffers.length) {
    files.set(
      'buffers.safetensors',
      encodeSafetensors(new Map(buffers.map(([n, b]) => [n, bufferToNamed(b)])), { producer: 'sortednet' }),
    );
  }
  if (input.optimizerState) {
    files.set(
      'optimizer.safetensors',
      encodeSafetensors(new Map([...input.optimizerState].map(([k, t]) => [k, toNamed(t)]))),
    );
  }
  for (const [name, bytes] of Object.entries(input.extraFiles ?? {})) files.set(name, bytes);
  const hashes: Record<string, string> = {};
  for (const [f, bytes] of files) hashes[f] = sha256Hex(bytes);
  const meta: CheckpointMeta = {
    format: CHECKPOINT_FORMAT,
    model: { family: input.model.family, config: input.model.config } as ModelSpec,
    grid: input.grid,
    train: input.train,
    step: input.step,
    ...(input.optimizerStep !== undefined && input.optimizerStep !== input.step
      ? { optimizerStep: input.optimizerStep }
      : {}),
    seed: input.seed,
    dataset: input.dataset,
    preprocess: input.preprocess,
    files: hashes,
    createdAt: new Date().toISOString(),
  };
  files.set('checkpoint.json', new TextEncoder().encode(JSON.stringify(meta, null, 2) + '\n'));
  return { meta, files };
}

/** Parses and checks checkpoint.json's text; `where` names it in errors. */
export function parseCheckpointMeta(text: string, where: string): CheckpointMeta {
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(text);
  } catch (e) {
    throw new Error(`checkpoint ${where} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
    throw new Error(`checkpoint ${where}: expected a JSON object, found ${JSON.stringify(meta)}`);
  }
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new Error(`checkpoint ${where}: format '${meta.format}' is not '${CHECKPOINT_FORMAT}'`);
  }
  const isObject = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(meta.files) || !isObject(meta.model)) {
    throw new Error(`checkpoint ${where}: 'files' or 'model' is missing`);
  }
  if (typeof meta.model.family !== 'string' || !isObject(meta.model.config)) {
    throw new Error(`checkpoint ${where}: 'model' needs a 'family' name and a 'config' object`);
  }
  if (!Number.isInteger(meta.step) || meta.step < 0) {
    throw new Error(`checkpoint ${where}: 'step' must be an integer ≥ 0, found ${JSON.stringify(meta.step)}`);
  }
  for (const [file, hash] of Object.entries(meta.files)) {
    // Names are plain file names: a checkpoint must not make a reader open files outside its folder.
    if (!/^[\w][\w.-]*$/.test(file) || typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash)) {
      throw new Error(
        `checkpoint ${where}: files entry ${JSON.stringify(file)}: ${JSON.stringify(hash)} is not a file name with a sha256`,
      );
    }
  }
  if (!meta.files['model.safetensors'] || !meta.files['bn_stats.safetensors']) {
    throw new Error(`checkpoint ${where}: 'files' lacks model.safetensors or bn_stats.safetensors`);
  }
  return meta;
}

/** Reads one blob of a checkpoint by name (from disk, over HTTP, from memory). */
export type BlobReader = (file: string) => Promise<Uint8Array | undefined> | Uint8Array | undefined;

async function readVerified(read: BlobReader, where: string, file: string, meta: CheckpointMeta) {
  const bytes = await read(file);
  if (!bytes) throw new Error(`checkpoint ${where}: ${file} is missing`);
  if (sha256Hex(bytes) !== meta.files[file]) {
    throw new Error(
      `checkpoint ${where}: ${file} does not match checkpoint.json (corrupt, or from another save); not loading`,
    );
  }
  return bytes;
}

export interface DecodedCheckpoint {
  meta: CheckpointMeta;
  model: SortedModel;
  optimizerState: Map<string, tf.Tensor>;
  /** Verified bytes of the files beyond weights, BN statistics and optimizer (e.g. tokenizer.json). */
  extraFiles: Map<string, Uint8Array>;
}

export interface DecodeOptions {
  /** Load into this model (same architecture) instead of building one from the metadata. */
  into?: SortedModel;
  /** Skip the optimizer state (inference). */
  skipOptimizer?: boolean;
  /**
   * Use the BN statistics evaluation calibrated, where present (default true: inference wants them).
   * Resuming training passes false, so that the model holds exactly what training saved.
   */
  calibrated?: boolean;
}

const CORE_FILES = new Set([
  'model.safetensors',
  'bn_stats.safetensors',
  'buffers.safetensors',
  'optimizer.safetensors',
]);

/** The file evaluation writes beside a checkpoint's files (not listed in checkpoint.json). */
export const CALIBRATION_FILE = 'bn_calibrated.safetensors';

/** BN statistics per sub-model as safetensors: `<subId>|<module>.mean/.variance`, counts in the metadata. */
function encodeBnStats(model: SortedModel, metadata: Record<string, string> = {}): Uint8Array {
  const bn = new Map<string, NamedArray>();
  const counts: Record<string, string> = { ...metadata };
  for (const [name, m] of namedBatchNorms(model)) {
    for (const [key, s] of m.stats) {
      bn.set(`${key}|${name}.mean`, toNamed(s.mean));
      bn.set(`${key}|${name}.variance`, toNamed(s.variance));
      counts[`${key}|${name}`] = String(s.count);
    }
  }
  return encodeSafetensors(bn, counts);
}

/** Sets (or replaces) the statistics the file holds; sub-models it does not mention keep theirs. */
function setBnStats(model: SortedModel, bn: ReturnType<typeof decodeSafetensors>, where: string): void {
  const mods = new Map(namedBatchNorms(model));
  for (const [name, t] of bn.tensors) {
    const m = /^(.*)\|(.*)\.(mean|variance)$/.exec(name);
    if (!m || m[3] !== 'mean') continue;
    const mod = mods.get(m[2]);
    const variance = bn.tensors.get(`${m[1]}|${m[2]}.variance`);
    if (t.dtype !== 'F32' || (variance && variance.dtype !== 'F32'))
      throw new Error(`${where}: BN statistics '${name}' must be F32`);
    if (!mod || !variance)
      throw new Error(`${where}: BN statistics '${name}' match no BatchNorm of the model`);
    // A narrower sub-model keeps statistics for a prefix of the channels.
    if (t.shape.length !== 1 || !(t.shape[0] <= mod.channels) || variance.shape.join() !== t.shape.join()) {
      throw new Error(
        `${where}: BN statistics '${name}' have shape [${t.shape}], BatchNorm '${m[2]}' has ${mod.channels} channels`,
      );
    }
    mod.resetStats(m[1]);
    mod.stats.set(m[1], {
      mean: tf.tensor1d(t.data as Float32Array),
      variance: tf.tensor1d(variance.data as Float32Array),
      count: Number(bn.metadata[`${m[1]}|${m[2]}`] ?? 1),
    });
  }
}

const dataOf = (bytes: Uint8Array): Uint8Array => {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return bytes.subarray(8 + n);
};

/**
 * The model's current BN statistics as bn_calibrated.safetensors for the checkpoint `meta`
 * describes: the metadata binds it to those weights (their sha256) and to its own data bytes.
 */
export function encodeCalibration(model: SortedModel, meta: CheckpointMeta): Uint8Array {
  const unbound = encodeBnStats(model);
  return encodeBnStats(model, {
    'sortednet.weights_sha256': meta.files['model.safetensors'],
    'sortednet.data_sha256': sha256Hex(dataOf(unbound)),
    'sortednet.step': String(meta.step),
  });
}

function decodeCalibration(bytes: Uint8Array, meta: CheckpointMeta, where: string) {
  const path = `${where}/${CALIBRATION_FILE}`;
  const bn = decodeSafetensors(bytes, path);
  if (bn.metadata['sortednet.weights_sha256'] !== meta.files['model.safetensors']) {
    throw new Error(
      `${path} was calibrated for other weights than ${where}/model.safetensors; delete it and run 'sortednet eval' again`,
    );
  }
  if (bn.metadata['sortednet.data_sha256'] !== sha256Hex(dataOf(bytes))) {
    throw new Error(
      `${path} is corrupt (its data does not match its hash); delete it and run 'sortednet eval' again`,
    );
  }
  return bn;
}

/** Builds (or fills) the model from a checkpoint's blobs, verifying every hash. */
export async function decodeCheckpoint(
  meta: CheckpointMeta,
  read: BlobReader,
  where: string,
  opts: DecodeOptions = {},
): Promise<DecodedCheckpoint> {
  const { into } = opts;
  if (into && JSON.stringify(into.config) !== JSON.stringify(meta.model.config)) {
    throw new Error(`checkpoint ${where}: its architecture differs from the model being loaded into`);
  }
  const weights = decodeSafetensors(
    await readVerified(read, where, 'model.safetensors', meta),
    `${where}/model.safetensors`,
  );
  const bn = decodeSafetensors(
    await readVerified(read, where, 'bn_stats.safetensors', meta),
    `${where}/bn_stats.safetensors`,
  );
  const model = into ?? buildModel(meta.model, meta.seed);
  const params = new Map(model.namedParameters());
  for (const [name, v] of params) {
    const t = weights.tensors.get(name);
    const file = `${where}/model.safetensors`;
    if (!t) throw new Error(`${file}: parameter '${name}' is missing`);
    if (t.dtype !== 'F32') throw new Error(`${file}: parameter '${name}' is ${t.dtype}; weights must be F32`);
    if (t.shape.join() !== v.shape.join()) {
      throw new Error(`${file}: '${name}' has shape [${t.shape}], model expects [${v.shape}]`);
    }
    v.assign(tf.tensor(t.data, t.shape));
  }
  const buffers = model.namedBuffers();
  if (buffers.length) {
    if (!meta.files['buffers.safetensors'])
      throw new Error(
        `checkpoint ${where}: the model has buffers (e.g. '${buffers[0][0]}') but buffers.safetensors is missing`,
      );
    const saved = decodeSafetensors(
      await readVerified(read, where, 'buffers.safetensors', meta),
      `${where}/buffers.safetensors`,
    );
    for (const [name, b] of buffers) {
      const t = saved.tensors.get(name);
      if (!t) throw new Error(`checkpoint ${where}: buffer '${name}' is missing`);
      if (t.shape.join() !== b.shape.join())
        throw new Error(
          `checkpoint ${where}: buffer '${name}' has shape [${t.shape}], model expects [${b.shape}]`,
        );
      b.assign(tf.tensor(t.data, t.shape, b.dtype));
    }
  }
  for (const [, m] of namedBatchNorms(model)) m.resetStats();
  setBnStats(model, bn, `${where}/bn_stats.safetensors`);
  if (opts.calibrated ?? true) {
    const bytes = await read(CALIBRATION_FILE);
    if (bytes) setBnStats(model, decodeCalibration(bytes, meta, where), `${where}/${CALIBRATION_FILE}`);
  }
  const optimizerState = new Map<string, tf.Tensor>();
  if (meta.files['optimizer.safetensors'] && !opts.skipOptimizer) {
    const o = decodeSafetensors(
      await readVerified(read, where, 'optimizer.safetensors', meta),
      `${where}/optimizer.safetensors`,
    );
    for (const [k, t] of o.tensors) {
      // `<parameter>.m`/`.v` (AdamW) or `.buf` (SGD), each shaped like its parameter.
      const file = `${where}/optimizer.safetensors`;
      const m = /^(.*)\.(m|v|buf)$/.exec(k);
      const p = m ? params.get(m[1]) : undefined;
      if (!p) throw new Error(`${file}: '${k}' is the state of no parameter of the model`);
      if (t.dtype !== 'F32') throw new Error(`${file}: '${k}' is ${t.dtype}; optimizer state must be F32`);
      if (t.shape.join() !== p.shape.join()) {
        throw new Error(`${file}: '${k}' has shape [${t.shape}], its parameter has [${p.shape}]`);
      }
      optimizerState.set(k, tf.tensor(t.data, t.shape));
    }
  }
  const extraFiles = new Map<string, Uint8Array>();
  for (const f of Object.keys(meta.files)) {
    if (!CORE_FILES.has(f)) extraFiles.set(f, await readVerified(read, where, f, meta));
  }
  return { meta, model, optimizerState, extraFiles };
}
