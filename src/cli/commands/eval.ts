/**
 * `sortednet eval`: every sub-model of a run (BatchNorm recalibrated per sub-model where the model
 * has it); for an LM run, perplexity per exit.
 */
import { initEngine, parseBackend } from '../../engine/backend.js';
import { Grid } from '../../sorted/grid.js';
import { join } from 'node:path';
import { loadCheckpoint, removeStale } from '../../io/checkpoint.js';
import { acquireRunLock } from '../../io/lock.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { evaluateRun, loadRunData, readRunJson, runTitle } from '../../run/run_folder.js';
import { checkEvalConfig } from '../../run/run_config.js';
import { evalLmRun, isLmRun } from '../../run/lm_run.js';
import { evaluateIndividualRun, isIndividualParent } from '../../run/individual.js';

export const registerEval: RegisterCommand = (program, exit) => {
  program
    .command('eval')
    .description(
      'every sub-model: params, FLOPs, accuracy, latency (BatchNorm recalibrated where present); LM runs: perplexity per exit',
    )
    .option('--run <dir>', 'the run folder')
    .option('--backend <name>', "wasm (default: the run's), cpu or webgpu")
    .action(async (flags: { run?: string; backend?: string }) => {
      const runDir = need(flags.run, '--run DIR', 'eval');
      const c = readRunJson(runDir);
      checkEvalConfig(c, join(runDir, 'run.json'));
      // Evaluation writes beside the checkpoint (never over it): one writer at a time all the same.
      const lock = acquireRunLock(runDir, 'eval');
      try {
        for (const p of removeStale(runDir)) console.warn(`removed ${p} (left by an interrupted write)`);
        await initEngine(flags.backend ? parseBackend(flags.backend, '--backend') : (c.backend ?? 'wasm'));
        if (isLmRun(c.model)) {
          await evalLmRun(runDir); // perplexity per exit on the corpus' validation split
          return exit(0);
        }
        if (isIndividualParent(c)) return exit(await evaluateIndividualRun(runDir, c)); // one model per sub-run
        const { model, meta } = await loadCheckpoint(runDir);
        const data = loadRunData(c);
        const title = runTitle(c, meta.model.family, meta.train?.strategy);
        exit(evaluateRun(runDir, model, new Grid(meta.grid, model), data, c, title));
      } finally {
        lock.release();
      }
    });
};
