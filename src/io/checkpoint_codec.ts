/**
 * The checkpoint format without a file system: a model (+ BN statistics per sub-model, optimizer
 * state) to named byte blobs and back. Node (src/io/checkpoint.ts) writes the blobs to a folder;
 * a browser fetches them. Every blob is checked against the sha256 that checkpoint.json records.
 *
 * Each file is one part of the model's state dict (Module.stateDict), by the same names:
 *   model.safetensors      the parameters (readable by Python as a PyTorch state dict)
 *   bn_stats.safetensors   BatchNorm statistics per sub-model: `<module>.stats.<subId>.mean`,
 *                          `.variance`, `.count`
 *   buffers.safetensors    module buffers (PAD masks, compact layers' index tables); only written
 *                          when the model has buffers
 *   optimizer.safetensors  optimizer state (for --resume)
 *   checkpoint.json        architecture, grid, training config and state, sha256 of each file
 *
 * Evaluation adds one optional file and never touches the others (so `--resume` stays exact):
 *   bn_calibrated.safetensors  BN statistics recalibrated per sub-model after training, bound to
 *                              the weights by their sha256 and checked by the hash of its own data
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { buildModel, ModelSpecSchema, type ModelSpec, type SortedModel } from '../models/index.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import type { StateKind } from '../nn/module.js';
import type { GridSpec } from '../sorted/grid.js';
import { TrainConfigInputSchema, type TrainConfig } from '../train/config.js';
import { checked } from '../schema/describe.js';
import { decodeSafetensors, encodeSafetensors, type NamedArray } from './safetensors.js';
import { sha256Hex } from './sha256.js';

export const CHECKPOINT_FORMAT = 'sortednet-checkpoint/2';
/** The previous format (BN statistics named `<subId>|<module>.mean`); still read, never written. */
const FORMAT_1 = 'sortednet-checkpoint/1';

/** What a raw input needs before the model sees it; travels with the weights. */
export interface Preprocess {
  /** Per-feature (or per-channel) mean and std subtracted/divided before the model. */
  mean?: number[];
  std?: number[];
  /** Images: the model's input size and channels. */
  image?: { height: number; width: number; channels: number };
  /**
   * Images: the training images' background per channel in [0, 1] (the median of their border
   * pixels): transparency is composited onto it and polarity matched to it.
   */
  background?: number[];
  /** Tabular: the feature names, in order. */
  features?: string[];
  /** Class names by class index. */
  classes?: string[];
  /** LMs: the tokenizer file name inside the checkpoint (a Hugging Face tokenizer.json). */
  tokenizer?: string;
  /** LMs: the window length (tokens) the model was trained on; generation past it is less reliable. */
  trainedContext?: number;
}

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT | typeof FORMAT_1;
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
  if (t.dtype === 'int32') return { dtype: 'I32', shape: t.shape.slice(), data: t.dataSync() as Int32Array };
  return { dtype: 'F32', shape: t.shape.slice(), data: t.dataSync() as Float32Array };
}

/** One kind of the model's state as safetensors, by state-dict name. */
function encodeState(model: SortedModel, kind: StateKind, metadata: Record<string, string> = {}): Uint8Array {
  const state = model.stateDict([kind]);
  return encodeSafetensors(new Map([...state].map(([n, t]) => [n, toNamed(t)])), metadata);
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
  return encodeState(model, 'parameter', {
    format: 'pt',
    producer: 'sortednet',
    'sortednet.layout': WEIGHTS_LAYOUT,
  });
}

/** The checkpoint as named blobs; `checkpoint.json` (with every other blob's hash) is among them. */
export function encodeCheckpoint(input: SaveInput): { meta: CheckpointMeta; files: Map<string, Uint8Array> } {
  const files = new Map<string, Uint8Array>();
  files.set('model.safetensors', encodeWeights(input.model));
  files.set('bn_stats.safetensors', encodeState(input.model, 'stats'));
  if (input.model.namedBuffers().length)
    files.set('buffers.safetensors', encodeState(input.model, 'buffer', { producer: 'sortednet' }));
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

const CheckedFields = z
  .object({ model: ModelSpecSchema, train: TrainConfigInputSchema.nullish() })
  .passthrough();

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
  if (meta.format !== CHECKPOINT_FORMAT && meta.format !== FORMAT_1) {
    throw new Error(
      `checkpoint ${where}: format '${meta.format}' is not '${CHECKPOINT_FORMAT}' (or the older '${FORMAT_1}'); a newer sortednet wrote it?`,
    );
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
  // The model and its training fields get the checks a run config gets, by the same schemas. A
  // training config is checked field by field, not for completeness (older checkpoints lack newer fields).
  checked(CheckedFields, meta, `checkpoint ${where}`);
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

/** A safetensors file's tensors as TensorFlow.js tensors (the caller disposes them). */
function tensorsOf(file: { tensors: Map<string, NamedArray> }): Map<string, tf.Tensor> {
  return new Map(
    [...file.tensors].map(([n, t]) => [
      n,
      tf.tensor(t.data, t.shape, t.dtype === 'I32' ? 'int32' : 'float32'),
    ]),
  );
}

/** Loads one kind of state from a decoded file into the model (strict: every name must match). */
function loadState(
  model: SortedModel,
  file: { tensors: Map<string, NamedArray> },
  kind: StateKind,
  where: string,
): void {
  const state = tensorsOf(file);
  try {
    model.loadStateDict(state, { kinds: [kind], where });
  } finally {
    tf.dispose([...state.values()]);
  }
}

// ---- Migration from format 1 -------------------------------------------------------------------
// Format 1 named BN statistics `<subId>|<module>.mean` / `.variance`, with the batch counts in the
// metadata under `<subId>|<module>`. Files with such names (bn_stats.safetensors of a format-1
// checkpoint; a bn_calibrated.safetensors written beside one) are renamed to the state-dict
// names `<module>.stats.<subId>.<field>` on reading. Nothing writes format 1 any more.
function fromFormat1Stats(
  file: ReturnType<typeof decodeSafetensors>,
  where: string,
): ReturnType<typeof decodeSafetensors> {
  if (![...file.tensors.keys()].some((n) => n.includes('|'))) return file;
  const tensors = new Map<string, NamedArray>();
  for (const [name, t] of file.tensors) {
    const bar = name.indexOf('|');
    const dot = name.lastIndexOf('.');
    const field = name.slice(dot + 1);
    if (bar < 0 || dot < bar || (field !== 'mean' && field !== 'variance'))
      throw new Error(`${where}: '${name}' is not a BN statistic '<subId>|<module>.mean' or '.variance'`);
    const [key, module] = [name.slice(0, bar), name.slice(bar + 1, dot)];
    tensors.set(`${module}.stats.${key}.${field}`, t);
    const count = Number(file.metadata[`${key}|${module}`] ?? 1);
    tensors.set(`${module}.stats.${key}.count`, { dtype: 'I32', shape: [], data: Int32Array.of(count) });
  }
  return { tensors, metadata: file.metadata };
}
// ---- End of the migration ----------------------------------------------------------------------

const dataOf = (bytes: Uint8Array): Uint8Array => {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return bytes.subarray(8 + n);
};

/**
 * The model's current BN statistics as bn_calibrated.safetensors for the checkpoint `meta`
 * describes: the metadata binds it to those weights (their sha256) and to its own data bytes.
 */
export function encodeCalibration(model: SortedModel, meta: CheckpointMeta): Uint8Array {
  const unbound = encodeState(model, 'stats');
  return encodeState(model, 'stats', {
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
  return fromFormat1Stats(bn, path);
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
  const file = (f: string) => `${where}/${f}`;
  const decode = async (f: string) => decodeSafetensors(await readVerified(read, where, f, meta), file(f));
  const weights = await decode('model.safetensors');
  const bn = fromFormat1Stats(await decode('bn_stats.safetensors'), file('bn_stats.safetensors'));
  const model = into ?? buildModel(meta.model, meta.seed);
  loadState(model, weights, 'parameter', file('model.safetensors'));
  const buffers = model.namedBuffers();
  if (buffers.length) {
    if (!meta.files['buffers.safetensors'])
      throw new Error(
        `checkpoint ${where}: the model has buffers (e.g. '${buffers[0][0]}') but buffers.safetensors is missing`,
      );
    loadState(model, await decode('buffers.safetensors'), 'buffer', file('buffers.safetensors'));
  }
  // The saved statistics replace whatever the model held; calibrated ones replace those they name.
  for (const [, m] of namedBatchNorms(model)) m.resetStats();
  loadState(model, bn, 'stats', file('bn_stats.safetensors'));
  if (opts.calibrated ?? true) {
    const bytes = await read(CALIBRATION_FILE);
    if (bytes) loadState(model, decodeCalibration(bytes, meta, where), 'stats', file(CALIBRATION_FILE));
  }
  const params = new Map(model.namedParameters());
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
