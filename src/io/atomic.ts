/**
 * Durable file writes. A file or folder becomes visible under its final name only once its bytes
 * are on disk (fsync), by one rename; the rename itself is made durable by fsync-ing the folder
 * that holds it. A kill at any moment leaves either the old or the new content, never a mix.
 * Leftovers of an interrupted write carry `.tmp-` in their name (see removeStale).
 */
import { appendFileSync, closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';

/** A temporary name beside `path`; every writer here uses this pattern, so removeStale finds them. */
export const tmpName = (path: string): string => `${path}.tmp-${randomBytes(4).toString('hex')}`;

export const isTmpName = (name: string): boolean => /\.tmp-[0-9a-f]+$/.test(name);

/**
 * A file-system error that names the file: Node's own say only `ENOSPC: no space left on device,
 * write` for a write to an open file. The code (`ENOSPC`…) is kept.
 */
export function fileError(e: unknown, path: string, doing = 'writing'): unknown {
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code !== 'string' || String(err.message).includes(path)) return e;
  const named: NodeJS.ErrnoException = new Error(`${err.message} (${doing} ${path})`, { cause: e });
  named.code = err.code;
  return named;
}

/** Writes `data` to `path` (created or truncated) and fsyncs it before returning. */
export function writeFileDurable(path: string, data: Uint8Array | string): void {
  try {
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw fileError(e, path);
  }
}

/** Appends `text` to `path` (a log); a failure names the file. */
export function appendText(path: string, text: string): void {
  try {
    appendFileSync(path, text);
  } catch (e) {
    throw fileError(e, path, 'appending to');
  }
}

/** Makes the entries of a folder (new names, renames) durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a file atomically: a temporary file beside it, fsync, rename over the target, fsync the folder. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = tmpName(path);
  try {
    writeFileDurable(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fileError(e, path);
  }
  fsyncDir(dirname(path));
}

/** Removes a folder tree so that it is never seen half-deleted: rename it to a temporary name first. */
export function removeTree(dir: string): void {
  const tmp = tmpName(dir);
  renameSync(dir, tmp);
  fsyncDir(dirname(dir));
  rmSync(tmp, { recursive: true, force: true });
}
