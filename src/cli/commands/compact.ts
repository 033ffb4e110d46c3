/** `sortednet compact`: the deployed model of a partitioned run (packed PAD layers), as a new run. */
import { parseBackend } from '../../engine/backend.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { intoNewFolder, sourceRun } from '../../run/out_folder.js';
import { compactInto } from '../../run/compact.js';

export const registerCompact: RegisterCommand = (program, exit) => {
  program
    .command('compact')
    .description(
      'write the deployed model of a run with PAD layers: packed dynamic/static values, λ folded, equal outputs',
    )
    .option('--run <dir>', 'the run folder (partitioned with sortednet partition)')
    .option('--out <dir>', 'an empty folder for the deployed model')
    .option('--backend <name>', "wasm (default: the run's), cpu or webgpu")
    .action(async (f: { run?: string; out?: string; backend?: string }) => {
      const runDir = need(f.run, '--run DIR', 'compact');
      const out = need(f.out, '--out DIR', 'compact');
      const c = sourceRun(runDir, 'compact', { deployed: false })!;
      await intoNewFolder(out, 'compact', () =>
        compactInto(runDir, c, out, f.backend ? parseBackend(f.backend, '--backend') : undefined),
      );
      exit(0);
    });
};
