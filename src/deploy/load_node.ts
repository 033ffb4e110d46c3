/**
 * `loadModel` in Node: also a path, to a run folder, a checkpoint folder or a tar of either.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bytesReader,
  ensureEngine,
  loadCheckpointFolder,
  loadFromReader,
  loadModel as loadModelAnywhere,
  type LoadModelOptions,
  type ModelSource,
} from './load.js';
import type { DeployedModel } from './model.js';
import { checkpointDir } from '../io/checkpoint.js';

const isUrl = (s: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(s);

/**
 * Loads a trained model from a path (run folder, checkpoint folder, .tar), a URL or bytes.
 *
 * ```ts
 * const model = await loadModel('runs/demo');
 * const { label } = await model.predict(image, { maxFlops: 5e6 });
 * ```
 */
export async function loadModel(source: ModelSource, options: LoadModelOptions = {}): Promise<DeployedModel> {
  const url =
    source instanceof URL ? source : typeof source === 'string' && isUrl(source) ? new URL(source) : null;
  if (url && url.protocol !== 'file:') return loadModelAnywhere(url, options);
  if (typeof source !== 'string' && !url) return loadModelAnywhere(source, options);
  const path = url ? fileURLToPath(url) : (source as string);
  if (!existsSync(path))
    throw new Error(`loadModel: '${path}' does not exist (a run folder, checkpoint folder or .tar)`);
  await ensureEngine(options.backend);
  if (statSync(path).isFile()) return loadFromReader(bytesReader(readFileSync(path)), path);
  const dir = checkpointDir(path); // the current step folder (or a flat checkpoint folder itself)
  const read = (folder: string) => async (file: string) => {
    const p = join(folder, file);
    return existsSync(p) ? new Uint8Array(readFileSync(p)) : undefined;
  };
  return loadCheckpointFolder(read(dir), dir, dir === path ? undefined : await read(path)('eval.json'));
}
