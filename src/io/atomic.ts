/**
 * Durable file writes. A file or folder becomes visible under its final name only once its bytes
 * are on disk (fsync), by one rename; the rename itself is made durable by fsync-ing the folder
 * that holds it. A kill at any moment leaves either the old or the new content, never a mix.
 * Leftovers of an interrupted write carry `.tmp-` in their name (see removeStale).
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';

/** A temporary name beside `path`; every writer here uses this pattern, so removeStale finds them. */
export const tmpName = (path: string): string => `${path}.tmp-${randomBytes(4).toString('hex')}`;

export const isTmpName = (name: string): boolean => /\.tmp-[0-9a-f]+$/.test(name);

/** Writes `data` to `path` (created or truncated) and fsyncs it before returning. */
export function writeFileDurable(path: string, data: Uint8Array | string): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
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
    throw e;
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
