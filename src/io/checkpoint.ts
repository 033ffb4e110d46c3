/**
 * Checkpoints on disk: the blobs of src/io/checkpoint_codec.ts in a folder, each written
 * atomically and checkpoint.json last.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SortedModel } from '../models/index.js';
import { writeFileAtomic } from './atomic.js';
import {
  decodeCheckpoint,
  encodeCheckpoint,
  parseCheckpointMeta,
  type CheckpointMeta,
  type SaveInput,
} from './checkpoint_codec.js';

export { CHECKPOINT_FORMAT, type CheckpointMeta, type SaveInput } from './checkpoint_codec.js';

export function saveCheckpoint(dir: string, input: SaveInput): void {
  mkdirSync(dir, { recursive: true });
  const { files } = encodeCheckpoint(input);
  for (const [f, bytes] of files) if (f !== 'checkpoint.json') writeFileAtomic(join(dir, f), bytes);
  writeFileAtomic(join(dir, 'checkpoint.json'), files.get('checkpoint.json')!);
}

export function readCheckpointMeta(dir: string): CheckpointMeta {
  const path = join(dir, 'checkpoint.json');
  if (!existsSync(path))
    throw new Error(`no checkpoint in ${dir}: ${path} not found (train first, or check --run)`);
  return parseCheckpointMeta(readFileSync(path, 'utf8'), path);
}

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  model: SortedModel;
  optimizerState: Map<string, tf.Tensor>;
  extraFiles: Map<string, Uint8Array>;
}

/** Loads weights into `into` if given (shapes must match), else builds the model from the metadata. */
export async function loadCheckpoint(dir: string, into?: SortedModel): Promise<LoadedCheckpoint> {
  const meta = readCheckpointMeta(dir);
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f)) : undefined);
  return decodeCheckpoint(meta, read, dir, { into });
}
