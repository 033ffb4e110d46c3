/**
 * Seals: `checkpoints/latest` names the current step folder and records the sha256 of the JSON
 * files that describe the run, so that an edit of one of them (by hand, or a damaged disk block)
 * cannot go unnoticed. checkpoint.json lists the hash of every other file of its folder but cannot
 * hold its own; run.json holds none. `latest` is where an edit of either does not also rewrite
 * the hash. Browser-safe (no file system): Node's reader is src/io/checkpoint.ts, the browser's
 * src/deploy/load.ts.
 *
 *   step-000030                                        the current step folder
 *   <sha256>  step-000030/checkpoint.json              one line per sealed file, as sha256sum
 *   <sha256>  step-000029/checkpoint.json              writes them (paths relative to checkpoints/)
 *   <sha256>  ../run.json
 *   fields step-000030/checkpoint.json 1f0c9a2e,…      a short digest of each field, in file order
 *   end 5d41402abc4b2a76                               the sha256 of the lines above (16 digits)
 *
 * The field digests only serve to say which field changed: each covers the lines of one key of the
 * file at depth 1 or 2 (`step`, `preprocess.mean`) as the writers indent them (2 spaces a level),
 * so they need no JSON canonical form shared by TypeScript and Python.
 */
import { sha256Hex } from './sha256.js';

/** The file name of the pointer in checkpoints/. */
export const LATEST = 'latest';
/** How `latest` names the run's configuration (relative to checkpoints/). */
export const RUN_CONFIG_SEAL = '../run.json';

export interface Seal {
  /** Relative to checkpoints/: `step-000030/checkpoint.json` or `../run.json`. */
  path: string;
  sha256: string;
  /** One 8-hex-digit digest per field span (fieldSpans), in file order. */
  fields: string[];
}

export interface Latest {
  /** The current step folder's name. */
  name: string;
  /** Empty for a `latest` written before seals existed (one line, the name). */
  seals: Seal[];
}

const STEP = /^step-\d+$/;
const SEAL_LINE = /^([0-9a-f]{64}) {2}(step-\d+\/checkpoint\.json|\.\.\/run\.json)$/;
const FIELDS_LINE = /^fields (\S+) (-|[0-9a-f]{8}(?:,[0-9a-f]{8})*)$/;

export const checkpointSealPath = (stepFolder: string): string => `${stepFolder}/checkpoint.json`;

const endLine = (body: string) => `end ${sha256Hex(new TextEncoder().encode(body)).slice(0, 16)}\n`;

export function formatLatest(l: Latest): string {
  const lines = [l.name, ...l.seals.map((s) => `${s.sha256}  ${s.path}`)];
  if (l.seals.length === 0) return l.name + '\n';
  for (const s of l.seals) lines.push(`fields ${s.path} ${s.fields.length ? s.fields.join(',') : '-'}`);
  const body = lines.join('\n') + '\n';
  // `latest` seals itself too: no byte of it, the seals of older folders included, changes unnoticed.
  return body + endLine(body);
}

/**
 * Parses `latest`'s text; `where` names it in errors. Strict: the text must be exactly what
 * formatLatest writes, so that every change to it is noticed (a damaged `latest` is refused).
 */
export function parseLatest(text: string, where: string): Latest {
  const bad = (why: string) =>
    new Error(
      `${where} is damaged (${why}); it seals the current checkpoint, so nothing was loaded. Restore it, or delete it to fall back to the newest complete checkpoint unchecked`,
    );
  const lines = text.split('\n');
  if (lines.length < 2 || lines[lines.length - 1] !== '') throw bad('it does not end with a newline');
  lines.pop();
  const name = lines[0];
  if (!STEP.test(name)) throw bad(`line 1 is ${JSON.stringify(name)}, not a step folder's name`);
  if (lines.length === 1) return { name, seals: [] };
  const body = text.slice(0, text.length - (lines[lines.length - 1].length + 1));
  if (lines[lines.length - 1] + '\n' !== endLine(body))
    throw bad('its last line is not the hash of the lines above it');
  lines.pop();
  const seals: Seal[] = [];
  let i = 1;
  for (; i < lines.length && !lines[i].startsWith('fields '); i++) {
    const m = SEAL_LINE.exec(lines[i]);
    if (!m) throw bad(`line ${i + 1} is not '<sha256>  <file>'`);
    seals.push({ sha256: m[1], path: m[2], fields: [] });
  }
  if (lines.length - i !== seals.length) throw bad('it has not one fields line per sealed file');
  seals.forEach((s, k) => {
    const m = FIELDS_LINE.exec(lines[i + k]);
    if (!m || m[1] !== s.path) throw bad(`line ${i + k + 1} is not 'fields ${s.path} <digests>'`);
    s.fields = m[2] === '-' ? [] : m[2].split(',');
  });
  if (seals.length === 0 || seals[0].path !== checkpointSealPath(name))
    throw bad(`it names ${name} but seals ${seals[0]?.path}`);
  const l = { name, seals };
  if (formatLatest(l) !== text) throw bad('its lines are not in the form sortednet writes');
  return l;
}

export interface FieldSpan {
  /** The key path, `step` or `preprocess.mean`. */
  name: string;
  /** 1 or 2. */
  depth: number;
  digest: string;
}

const keyAt = (line: string, depth: number): string | undefined => {
  const m = /^( *)("(?:[^"\\]|\\.)*"): /.exec(line);
  if (!m || m[1].length !== 2 * depth) return undefined;
  try {
    return JSON.parse(m[2]) as string;
  } catch {
    return undefined;
  }
};
const indentOf = (line: string) => line.length - line.trimStart().length;

/**
 * The fields of a JSON file as written with 2-space indentation: every key at depth 1 and 2, each
 * with a digest of its lines (the key's line to its value's end, a trailing comma dropped).
 */
export function fieldSpans(text: string): FieldSpan[] {
  const lines = text.split('\n');
  const out: FieldSpan[] = [];
  let parent = '';
  for (let i = 0; i < lines.length; i++) {
    const depth = keyAt(lines[i], 1) !== undefined ? 1 : keyAt(lines[i], 2) !== undefined ? 2 : 0;
    if (depth === 0) continue;
    const key = keyAt(lines[i], depth)!;
    if (depth === 1) parent = key;
    const indent = 2 * depth;
    let j = i + 1;
    while (
      j < lines.length &&
      (indentOf(lines[j]) > indent ||
        (indentOf(lines[j]) === indent && !/^ *"/.test(lines[j]) && lines[j].trim() !== ''))
    )
      j++;
    // A closing bracket at the key's own indent ends its value; include it.
    const joined = lines.slice(i, j).join('\n');
    const span = joined.endsWith(',') ? joined.slice(0, -1) : joined;
    out.push({
      name: depth === 1 ? key : `${parent}.${key}`,
      depth,
      digest: sha256Hex(new TextEncoder().encode(span)).slice(0, 8),
    });
  }
  return out;
}

/** The seal of `bytes` under `path`. */
export function sealOf(path: string, bytes: Uint8Array): Seal {
  return {
    path,
    sha256: sha256Hex(bytes),
    fields: fieldSpans(new TextDecoder().decode(bytes)).map((f) => f.digest),
  };
}

/** A value as a message shows it, short. */
function shown(text: string, name: string): string {
  try {
    let v: unknown = JSON.parse(text);
    const parts = name.split('.');
    // Keys may contain dots (`files.model.safetensors`): take the longest key that exists.
    while (parts.length && v !== null && typeof v === 'object') {
      let k = parts.length;
      while (k > 0 && !(parts.slice(0, k).join('.') in (v as object))) k--;
      if (k === 0) return '';
      v = (v as Record<string, unknown>)[parts.slice(0, k).join('.')];
      parts.splice(0, k);
    }
    const s = JSON.stringify(v) ?? '';
    return ` (now ${s.length > 40 ? s.slice(0, 37) + '…' : s})`;
  } catch {
    return '';
  }
}

/**
 * What changed in `text` since `seal` was made, in words: the fields whose digests differ (the
 * deepest that do), or why fields cannot be told apart.
 */
export function describeChange(text: string, seal: Seal): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return `it is not valid JSON any more (${(e as Error).message})`;
  }
  const spans = fieldSpans(text);
  if (spans.length !== seal.fields.length) {
    return seal.fields.length === 0
      ? 'changed since it was sealed'
      : `fields were added, removed or re-indented (${spans.length} found, ${seal.fields.length} sealed)`;
  }
  const changed = spans.map((s, i) => s.digest !== seal.fields[i]);
  const named = spans.filter(
    (s, i) =>
      changed[i] &&
      (s.depth === 2 ||
        !spans.some((c, k) => changed[k] && c.depth === 2 && c.name.startsWith(s.name + '.'))),
  );
  if (named.length === 0) return 'changed outside its fields (brackets or spacing)';
  const list = named.map((s) => `'${s.name}'${shown(text, s.name)}`);
  return `${list.length === 1 ? 'field' : 'fields'} ${list.join(', ')} changed since it was sealed`;
}

/**
 * Whether `bytes` are those `seal` recorded. The sha256 decides; the field digests need no check of
 * their own, since `latest` as a whole is checked by its last line.
 */
export function matchesSeal(bytes: Uint8Array, seal: Seal): boolean {
  return sha256Hex(bytes) === seal.sha256;
}

/**
 * Throws unless `bytes` match `seal`. `file` names the file, `latestPath` the seal's home and
 * `accept` how to accept a deliberate edit.
 */
export function checkSeal(
  bytes: Uint8Array,
  seal: Seal,
  file: string,
  latestPath: string,
  accept: string,
): void {
  if (!matchesSeal(bytes, seal)) {
    throw new Error(
      `${file} does not match its seal in ${latestPath}: ${describeChange(new TextDecoder().decode(bytes), seal)}; not loading. If you edited it on purpose, ${accept}; otherwise restore it`,
    );
  }
}
