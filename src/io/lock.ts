/**
 * One writer per run folder: `RUN/run.lock` holds the writer's PID, host and command. It is created
 * atomically (written in full under a temporary name, then hard-linked to the lock's name, which
 * fails if the name exists), so a reader never sees a half-written lock. A lock whose process is
 * gone (same host, PID not alive) is taken over with a message; a live one, or one from another
 * host (whose PID cannot be checked), refuses the second writer with the holder's details.
 * Within one process the lock is re-entrant (the train command holds it; the trainer takes it again).
 */
import { hostname } from 'node:os';
import { linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { writeFileDurable } from './atomic.js';

export const LOCK_FILE = 'run.lock';

interface Holder {
  pid: number;
  host: string;
  command: string;
  since: string;
  token: string;
}

export interface RunLock {
  readonly path: string;
  release(): void;
}

/**
 * The lock's own temporary files are named after their process, not `*.tmp-*`: the holder of the
 * lock clears `*.tmp-*` files as leftovers (removeStale), and must not delete one that another
 * process is about to link. Orphans of dead processes are removed by the next successful acquire.
 */
export const lockTmpName = (path: string): string =>
  `${path}.pid-${process.pid}-${randomBytes(4).toString('hex')}`;
const OWN_TMP = /\.pid-(\d+)-[0-9a-f]+$/;

const held = new Map<string, { count: number; token: string }>();

function readHolder(path: string): Holder | undefined {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8'));
    return h && typeof h === 'object' && Number.isInteger(h.pid) && typeof h.host === 'string'
      ? h
      : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

const describe = (h: Holder) => `PID ${h.pid} on ${h.host} (${h.command}, since ${h.since})`;

/**
 * Takes the lock of `runDir` (created if missing) for `command`, or throws naming the holder.
 * Release it when done; a process that dies holding it leaves a stale lock the next writer takes over.
 */
export function acquireRunLock(runDir: string, command: string): RunLock {
  mkdirSync(runDir, { recursive: true });
  const path = join(runDir, LOCK_FILE);
  const key = resolve(path);
  const mine = held.get(key);
  if (mine) {
    mine.count++;
    return { path, release: () => release(key, path) };
  }
  const me: Holder = {
    pid: process.pid,
    host: hostname(),
    command,
    since: new Date().toISOString(),
    token: randomBytes(8).toString('hex'),
  };
  const tmp = lockTmpName(path);
  writeFileDurable(tmp, JSON.stringify(me) + '\n');
  try {
    for (let attempt = 0; !createExclusive(tmp, path); attempt++) {
      const h = readHolder(path);
      if (h && (h.host !== me.host || alive(h.pid) || attempt > 3)) {
        throw new Error(
          `${runDir} is in use by ${describe(h)}; wait for it to finish, or use another folder` +
            (h.host !== me.host ? ` (if that process is gone, delete ${path})` : ''),
        );
      }
      if (!h) {
        throw new Error(
          `${path} cannot be read as a lock (another command is taking it, or it is damaged); delete it if no command uses ${runDir}`,
        );
      }
      takeOver(path, h);
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  for (const name of readdirSync(runDir)) {
    const m = OWN_TMP.exec(name);
    if (name.startsWith(`${LOCK_FILE}.pid-`) && m && !alive(Number(m[1])))
      rmSync(join(runDir, name), { force: true });
  }
  if (held.size === 0) process.on('exit', onExit);
  held.set(key, { count: 1, token: me.token });
  return { path, release: () => release(key, path) };
}

/**
 * Gives `path` the content of `tmp` unless `path` exists; false if it does. A hard link does both
 * at once; file systems without hard links get an exclusive create (a reader may then see the
 * lock empty for a moment, which reads as held).
 */
function createExclusive(tmp: string, path: string): boolean {
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
  }
  try {
    writeFileSync(path, readFileSync(tmp), { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** Moves a dead holder's lock aside; if another process replaced it meanwhile, puts that one back. */
function takeOver(path: string, stale: Holder): void {
  const aside = lockTmpName(path);
  try {
    renameSync(path, aside);
  } catch {
    return; // someone else moved it first; try again
  }
  const moved = readHolder(aside);
  if (moved?.token !== stale.token) {
    try {
      linkSync(aside, path); // a live lock we must not have taken
    } catch {
      // another writer already holds the name
    }
  } else {
    console.warn(`taking over the lock ${path}: its holder, ${describe(stale)}, is no longer running`);
  }
  rmSync(aside, { force: true });
}

function release(key: string, path: string): void {
  const mine = held.get(key);
  if (!mine) return;
  if (--mine.count > 0) return;
  held.delete(key);
  if (readHolder(path)?.token === mine.token) rmSync(path, { force: true });
  if (held.size === 0) process.off('exit', onExit);
}

/** A process that exits without releasing (an error path, process.exit) still removes its locks. */
function onExit(): void {
  for (const [key, { token }] of held) if (readHolder(key)?.token === token) rmSync(key, { force: true });
  held.clear();
}
