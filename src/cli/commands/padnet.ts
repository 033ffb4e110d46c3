/** `sortednet padnet` and `sortednet partition`: the PAD-Net experiment on Fashion-MNIST. */
import { Command } from 'commander';
import { parseBackend } from '../../engine/backend.js';
import {
  EXPERIMENT_DEFAULTS,
  parseVariant,
  runPadExperimentReport,
  type ExperimentOptions,
} from '../../dynamic/experiment.js';
import { checkKappa } from '../../dynamic/imp.js';
import { intArg, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';

interface PadFlags {
  backend?: string;
  train?: number;
  test?: number;
  epochs?: number;
  batch?: number;
  lr?: number;
  widths?: string;
  kernels?: number;
  variants?: string;
  rounds?: number;
  calibration?: number;
  anneal?: number;
  seed?: number;
  out?: string;
  kappa?: number;
  method?: string;
}

function padOptions(cmd: Command): Command {
  const d = EXPERIMENT_DEFAULTS;
  return cmd
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .option('--train <n>', `training images (${d.train})`, intArg)
    .option('--test <n>', `test images (${d.test})`, intArg)
    .option('--epochs <n>', `epochs (${d.epochs})`, intArg)
    .option('--batch <n>', `batch size (${d.batch})`, intArg)
    .option('--lr <x>', `learning rate (${d.lr})`, numArg)
    .option('--widths <list>', `stage widths (${d.widths.join(',')})`)
    .option('--kernels <k>', `dynamic kernels K (${d.kernels})`, intArg)
    .option('--rounds <t>', `IMP rounds T (${d.rounds})`, intArg)
    .option('--calibration <n>', `calibration mini-batches for IMP (${d.calibration})`, intArg)
    .option('--anneal <n>', `epochs of temperature annealing (${d.anneal})`, numArg)
    .option('--seed <n>', `seed (${d.seed})`, intArg)
    .option('--out <dir>', `results folder (${d.out})`);
}

function experimentOptions(f: PadFlags): ExperimentOptions {
  const o: ExperimentOptions = { ...EXPERIMENT_DEFAULTS };
  if (f.backend !== undefined) o.backend = parseBackend(f.backend, '--backend');
  for (const k of [
    'train',
    'test',
    'epochs',
    'batch',
    'lr',
    'kernels',
    'rounds',
    'calibration',
    'anneal',
    'seed',
  ] as const) {
    if (f[k] !== undefined) o[k] = f[k];
  }
  if (f.widths !== undefined) {
    o.widths = f.widths.split(',').map((w) => intArg(w));
  }
  if (f.variants !== undefined) o.variants = f.variants.split(',').map(parseVariant);
  if (f.out !== undefined) o.out = f.out;
  return o;
}

export const registerPadnet: RegisterCommand = (program, exit) => {
  padOptions(
    program
      .command('padnet')
      .description('PAD-Net on Fashion-MNIST: static vs DY-Conv vs PAD (IMP) vs random partition'),
  )
    .option('--variants <list>', 'static, dynamic, pad:<kappa>, random:<kappa> (comma-separated)')
    .action(async (f: PadFlags) => {
      await runPadExperimentReport(experimentOptions(f), `sortednet ${process.argv.slice(2).join(' ')}`);
      exit(0);
    });

  padOptions(
    program
      .command('partition')
      .description('Iterative Mode Partition of a PAD ResNet at dynamic ratio K, then train, deploy, report'),
  )
    .option('--kappa <k>', 'the dynamic ratio, in (0, 1]', numArg)
    .option('--method <m>', 'imp (default) or random', 'imp')
    .action(async (f: PadFlags) => {
      if (f.kappa === undefined) throw new Error('partition needs --kappa K (the dynamic ratio, in (0, 1])');
      checkKappa(f.kappa, '--kappa');
      if (f.method !== 'imp' && f.method !== 'random')
        throw new Error(`--method: '${f.method}' is not imp or random`);
      const o = experimentOptions(f);
      o.variants = [parseVariant(`${f.method === 'imp' ? 'pad' : 'random'}:${f.kappa}`)];
      await runPadExperimentReport(o, `sortednet ${process.argv.slice(2).join(' ')}`);
      exit(0);
    });
};
