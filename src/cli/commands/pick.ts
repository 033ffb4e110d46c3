/** `sortednet pick`: the best sub-model within a budget, read from the evaluation; no search. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initEngine } from '../../engine/backend.js';
import { buildModel } from '../../models/index.js';
import { Grid } from '../../sorted/grid.js';
import { readCheckpointMeta } from '../../io/checkpoint.js';
import { candidatesFrom, pickSubModel } from '../../infer/pick.js';
import { need, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { readEvalRows } from '../../run/run_folder.js';

interface PickFlags {
  run?: string;
  maxFlops?: number;
  maxParams?: number;
  maxLatencyMs?: number;
}

export const registerPick: RegisterCommand = (program, exit) => {
  program
    .command('pick')
    .description('the most accurate sub-model within a budget (FLOPs, parameters or latency)')
    .option('--run <dir>', 'the run folder')
    .option('--max-flops <x>', 'FLOPs budget per example', numArg)
    .option('--max-params <n>', 'parameter budget', numArg)
    .option('--max-latency-ms <t>', 'batch-1 latency budget (from eval)', numArg)
    .action(async (flags: PickFlags) => {
      const runDir = need(flags.run, '--run DIR', 'pick');
      const budget = {
        maxFlops: flags.maxFlops,
        maxParams: flags.maxParams,
        maxLatencyMs: flags.maxLatencyMs,
      };
      let candidates;
      if (existsSync(join(runDir, 'eval.json'))) candidates = candidatesFrom(readEvalRows(runDir));
      else {
        await initEngine('cpu');
        const meta = readCheckpointMeta(runDir);
        candidates = candidatesFrom(new Grid(meta.grid, buildModel(meta.model)).entries);
      }
      const best = pickSubModel(candidates, budget);
      if (!best) {
        const min = candidates.reduce((a, b) => (a.flops < b.flops ? a : b));
        // Thrown like every command's error: 'sortednet: …' on stderr, exit code 1.
        throw new Error(
          `pick: no sub-model fits; the smallest is ${min.id} (${min.flops} FLOPs, ${min.params} params${min.latencyMs !== undefined ? `, ${min.latencyMs.toFixed(3)} ms` : ''})`,
        );
      }
      console.log(JSON.stringify(best));
      exit(0);
    });
};
