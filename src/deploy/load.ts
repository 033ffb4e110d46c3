/**
 * `loadModel`: a checkpoint from a URL (fetch) or from bytes (a tar of the folder, or its files
 * by name) into a DeployedModel; browser-safe. The Node entry adds file-system paths.
 *
 * A source may be a checkpoint folder (checkpoint.json and its blobs) or a run folder: then
 * `checkpoints/latest` names the current step folder, and a checkpoint.json at the top is the
 * older single-checkpoint layout. eval.json (accuracy, latency per sub-model) is read from beside
 * the checkpoint, else from the run folder, when present.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, type BackendName } from '../engine/backend.js';
import { decodeCheckpoint, parseCheckpointMeta } from '../io/checkpoint_codec.js';
import { checkSeal, parseLatest, type Seal } from '../io/seal.js';
import { DeployedModel, type EvalSummary } from './model.js';
import { readTar } from './tar.js';
import { parseEvalJson } from '../train/eval_json.js';

/** A URL, or bytes: a tar of a checkpoint (or run) folder, or the folder's files by name. */
export type ModelSource =
  | string
  | URL
  | ArrayBuffer
  | Uint8Array
  | ReadonlyMap<string, Uint8Array>
  | Readonly<Record<string, Uint8Array>>;

export interface LoadModelOptions {
  /** The TensorFlow.js backend; by default the one already set up, else 'wasm'. */
  backend?: BackendName;
  /** fetch to use for URLs (default globalThis.fetch). */
  fetch?: typeof fetch;
}

/** Reads a file of the source by relative path; undefined when it does not exist. */
export type FileReader = (path: string) => Promise<Uint8Array | undefined>;

/** Sets up the engine unless the caller already did (or asks for a particular backend). */
export async function ensureEngine(backend?: BackendName): Promise<void> {
  if (backend !== undefined) await initEngine(backend);
  else if (!tf.engine().backendName) await initEngine('wasm');
}

/** Builds the model from a reader rooted at a checkpoint or run folder. */
export async function loadFromReader(read: FileReader, where: string): Promise<DeployedModel> {
  const bytes = await read('checkpoints/latest');
  const text = bytes ? new TextDecoder().decode(bytes) : '';
  let latest = text.trim();
  let seal: Seal | undefined;
  // A sealed `latest` (the name, then hashes): checkpoint.json must match its seal.
  if (/^step-\d+\n[0-9a-f]{64} /.test(text)) {
    const l = parseLatest(text, `${where}/checkpoints/latest`);
    [latest, seal] = [l.name, l.seals[0]];
  }
  // A server that answers missing files with a page (a single-page-app fallback) is no pointer.
  if (!latest || !/^[\w.-]+$/.test(latest)) return loadCheckpointFolder(read, where);
  const folder = `checkpoints/${latest}`;
  return loadCheckpointFolder(
    (f) => read(`${folder}/${f}`),
    `${where}/${folder}`,
    await read('eval.json'),
    seal && { seal, latest: `${where}/checkpoints/latest` },
  );
}

/**
 * Builds the model from a reader rooted at one checkpoint's folder (checkpoint.json and its blobs);
 * `runEval` is the run folder's eval.json, used when none lies beside the checkpoint.
 */
export async function loadCheckpointFolder(
  read: FileReader,
  where: string,
  runEval?: Uint8Array,
  sealed?: { seal: Seal; latest: string },
): Promise<DeployedModel> {
  const metaBytes = await read('checkpoint.json');
  if (!metaBytes) {
    throw new Error(
      `no checkpoint at ${where}: neither checkpoints/latest nor checkpoint.json found (is it a run or checkpoint folder?)`,
    );
  }
  if (sealed) {
    const hint = "run 'sortednet seal --run RUN' on the run folder to accept the edit";
    checkSeal(metaBytes, sealed.seal, `${where}/checkpoint.json`, sealed.latest, hint);
  }
  const meta = parseCheckpointMeta(new TextDecoder().decode(metaBytes), `${where}/checkpoint.json`);
  const { model } = await decodeCheckpoint(meta, read, where, { skipOptimizer: true });
  return new DeployedModel(meta, model, parseEvalRows((await read('eval.json')) ?? runEval), where);
}

/** eval.json's rows; an unreadable file only loses the accuracy column, so it is skipped. */
function parseEvalRows(bytes: Uint8Array | undefined): EvalSummary[] {
  if (!bytes) return [];
  try {
    return parseEvalJson(new TextDecoder().decode(bytes), 'eval.json');
  } catch {
    return [];
  }
}

/**
 * A reader over files fetched from `base` (a folder URL). A 404 is a missing file, and so is an
 * HTML page where a checkpoint file was asked for: static hosts and `vite preview` answer every
 * missing path with the app's index.html and status 200 (a single-page-app fallback).
 */
export function urlReader(base: string, fetchFn: typeof fetch = globalThis.fetch): FileReader {
  const root = base.endsWith('/') ? base : `${base}/`;
  return async (path) => {
    const url = root + path;
    let res: Response;
    try {
      res = await fetchFn(url);
    } catch (e) {
      throw new Error(`cannot fetch ${url}: ${(e as Error).message}`, { cause: e });
    }
    if (res.status === 404 || res.status === 410) return undefined;
    if (!res.ok) throw new Error(`fetching ${url}: HTTP ${res.status} ${res.statusText}`);
    const html = /^\s*text\/html/i.test(res.headers.get('content-type') ?? '');
    const bytes = new Uint8Array(await res.arrayBuffer());
    return html || looksLikeHtml(bytes) ? undefined : bytes;
  };
}

/** No checkpoint file starts with an HTML tag; a page served without a content type does. */
export function looksLikeHtml(bytes: Uint8Array): boolean {
  const head = new TextDecoder().decode(bytes.subarray(0, 64)).trimStart().toLowerCase();
  return head.startsWith('<!doctype html') || head.startsWith('<html');
}

/** A reader over files in memory, rooted at the folder holding the checkpoint (or checkpoints/). */
export function memoryReader(files: ReadonlyMap<string, Uint8Array>): FileReader {
  const roots = [...files.keys()]
    .map((name) => /^(.*?)(checkpoints\/latest|checkpoint\.json)$/.exec(name)?.[1])
    .filter((r): r is string => r !== undefined && (r === '' || r.endsWith('/')))
    .sort((a, b) => a.length - b.length);
  const root = roots[0] ?? '';
  return async (path) => files.get(root + path);
}

/** Bytes or a file map as a reader: a tar archive, or files by name. */
export function bytesReader(source: Exclude<ModelSource, string | URL>): FileReader {
  if (source instanceof ArrayBuffer || source instanceof Uint8Array) {
    return memoryReader(
      readTar(source instanceof Uint8Array ? source : new Uint8Array(source), 'model bytes'),
    );
  }
  return memoryReader(source instanceof Map ? source : new Map(Object.entries(source)));
}

/**
 * Loads a trained model: `await loadModel('/models/fm/')` in a browser (relative URLs resolve
 * against the page), a URL or bytes anywhere. Switch sub-models per call of `predict`.
 */
export async function loadModel(source: ModelSource, options: LoadModelOptions = {}): Promise<DeployedModel> {
  await ensureEngine(options.backend);
  if (typeof source === 'string' || source instanceof URL) {
    const base =
      typeof globalThis.location === 'object'
        ? new URL(String(source), globalThis.location.href)
        : new URL(String(source));
    return loadFromReader(urlReader(base.href, options.fetch), base.href.replace(/\/$/, ''));
  }
  return loadFromReader(bytesReader(source), 'model bytes');
}
