/** `sortednet seal`: accept deliberate edits of a run's checkpoint.json or run.json. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sealRun } from '../../io/checkpoint.js';
import { acquireRunLock } from '../../io/lock.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { parseRunConfig } from '../../run/run_config.js';

export const registerSeal: RegisterCommand = (program, exit) => {
  program
    .command('seal')
    .description(
      "accept edits of a run's checkpoint.json and run.json: record their current content in checkpoints/latest",
    )
    .option('--run <dir>', 'the run folder')
    .action((flags: { run?: string }) => {
      const runDir = need(flags.run, '--run DIR', 'seal');
      const lock = acquireRunLock(runDir, 'seal');
      try {
        // An edit is accepted only as a valid run config (checkpoint.json is checked by sealRun).
        const runJson = join(runDir, 'run.json');
        if (existsSync(runJson)) parseRunConfig(readFileSync(runJson, 'utf8'), runJson);
        const accepted = sealRun(runDir);
        if (accepted.length === 0) console.log(`${runDir}: every file matches its seal; nothing to accept`);
        for (const a of accepted) console.log(`accepted ${a.file}: ${a.change}`);
      } finally {
        lock.release();
      }
      exit(0);
    });
};
