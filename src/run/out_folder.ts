/** The folders partition, compact and extract read (a finished run) and write (a new one). */
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { hasCheckpoint } from '../io/checkpoint.js';
import { acquireRunLock } from '../io/lock.js';
import { readRunJson } from './run_folder.js';
import type { RunConfig } from './run_config.js';

/** Where compact records the run it deployed (so a deployed run can name its masked source). */
export const COMPACT_RECORD = 'compact.json';

/**
 * The run `command` reads, checked before anything is written: a checkpoint, and masks that can
 * still change (`deployed: false`) unless the command reads deployed runs too.
 */
export function sourceRun(runDir: string, command: string, o: { deployed: boolean }): RunConfig | null {
  // extract also reads a bare checkpoint (no run.json); the others need the run's data.
  const c = o.deployed && !existsSync(join(runDir, 'run.json')) ? null : readRunJson(runDir);
  if (!hasCheckpoint(runDir)) {
    throw new Error(
      `${runDir} holds no checkpoint; give ${command} the --run folder of a trained run ('sortednet train --run DIR' makes one)`,
    );
  }
  const config =
    c && typeof c.model !== 'string' ? (c.model.config as { compact?: object } | undefined) : undefined;
  if (!o.deployed && config?.compact) {
    const record = join(runDir, COMPACT_RECORD);
    const source = existsSync(record)
      ? (JSON.parse(readFileSync(record, 'utf8')) as { source?: string }).source
      : undefined;
    throw new Error(
      `${runDir} is already compacted (deployed); ${command} the masked run it came from` +
        (source ? `: ${source}` : " (the --run given to 'sortednet compact')"),
    );
  }
  return c;
}

/**
 * Runs `write` into the new run folder `out` under its lock. `out` must not be a file or hold a
 * checkpoint; a folder this call created is removed again when `write` fails, so nothing is left behind.
 */
export async function intoNewFolder(out: string, command: string, write: () => Promise<void>): Promise<void> {
  const existed = existsSync(out);
  if (existed && !statSync(out).isDirectory())
    throw new Error(`--out ${out} is a file, not a folder; give a new or empty folder`);
  if (hasCheckpoint(out)) throw new Error(`${out} already holds a checkpoint; choose another --out folder`);
  const lock = acquireRunLock(out, command);
  let ok = false;
  try {
    await write();
    ok = true;
  } finally {
    lock.release();
    if (!ok && !existed) rmSync(out, { recursive: true, force: true });
  }
}
