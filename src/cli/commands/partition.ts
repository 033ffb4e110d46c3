/** `sortednet partition`: Iterative Mode Partition of a run's PAD layers, written as a new run. */
import { parseBackend } from '../../engine/backend.js';
import { checkKappa } from '../../dynamic/imp.js';
import { intArg, need, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { freshFolder } from '../../run/run_folder.js';
import { intoNewFolder, sourceRun } from '../../run/out_folder.js';
import { partitionInto, type PartitionRunOptions } from '../../run/partition.js';

/** The run options as flags: κ may be missing (and is asked for), the backend is a name to check. */
interface PartitionFlags extends Omit<PartitionRunOptions, 'kappa' | 'backend'> {
  run?: string;
  kappa?: number;
  out?: string;
  backend?: string;
}

export const registerPartition: RegisterCommand = (program, exit) => {
  program
    .command('partition')
    .description(
      "split the PAD layers of a run into dynamic (a fraction κ) and static elements (IMP on calibration batches of the run's data); writes a new run",
    )
    .option('--run <dir>', 'the run folder (a model with PAD layers, e.g. the pad-resnet preset)')
    .option('--kappa <k>', 'κ, the fraction of elements kept dynamic, in (0, 1]', numArg)
    .option('--out <dir>', 'the new run folder (default: <run>-kappa<k>)')
    .option('--rounds <t>', 'IMP rounds T (κ_t = κ^(t/T))', intArg, 3)
    .option('--method <m>', 'imp, or random (the ablation: same counts, random elements)', 'imp')
    .option('--threshold <t>', 'global (κ of all elements) or per-layer (κ of each mask)', 'global')
    .option('--calibration <n>', 'calibration mini-batches from the training data', intArg, 4)
    .option('--batch-size <n>', 'examples per calibration mini-batch', intArg, 64)
    .option('--seed <n>', 'seeds the choice of calibration batches and the random method', intArg, 1)
    .option('--backend <name>', "wasm (default: the run's), cpu or webgpu")
    .action(async (f: PartitionFlags) => {
      const runDir = need(f.run, '--run DIR', 'partition');
      const kappa = checkKappa(need(f.kappa, '--kappa K', 'partition'), '--kappa');
      if (f.method !== 'imp' && f.method !== 'random')
        throw new Error(`--method: '${f.method}' is not imp or random`);
      if (f.threshold !== 'global' && f.threshold !== 'per-layer')
        throw new Error(`--threshold: '${f.threshold}' is not global or per-layer`);
      const c = sourceRun(runDir, 'partition', { deployed: false })!;
      const out = f.out ?? freshFolder(`${runDir.replace(/\/+$/, '')}-kappa${kappa}`);
      const backend = f.backend ? parseBackend(f.backend, '--backend') : undefined;
      await intoNewFolder(out, 'partition', () => partitionInto(runDir, c, out, { ...f, kappa, backend }));
      exit(0);
    });
};
