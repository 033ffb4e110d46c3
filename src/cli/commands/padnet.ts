/** `sortednet padnet` and `sortednet padnet-spam`: the PAD-Net studies (src/experiments). */
import { parseBackend } from '../../engine/backend.js';
import { FASHION_DEFAULTS, runFashionReport, type FashionOptions } from '../../experiments/padnet_fashion.js';
import { SPAM_DEFAULTS, runSpamReport, type SpamOptions } from '../../experiments/padnet_spam.js';
import { Option } from 'commander';
import { intArg, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';

type Flags = Record<string, string | number | undefined>;

/** Flags named as in `train` (--batch-size, --train-subset, --test-subset) → the study's option names. */
const STUDY_NAME: Record<string, string> = { batchSize: 'batch', trainSubset: 'train', testSubset: 'test' };

/** The study's former flag name (--batch, --train, --test): still accepted, not shown in help. */
const hiddenAlias = (flag: string) => new Option(`--${flag} <n>`).argParser(intArg).hideHelp();

const list = (v: string) => v.split(',').map((s) => s.trim());

/** Options as given over defaults; --widths and --variants are lists, --backend is checked. */
export function studyOptions<O extends object>(defaults: O, f: Flags): O {
  const o = { ...defaults } as Record<string, unknown>;
  for (const [k, v] of Object.entries(f)) {
    if (v === undefined) continue;
    if (k === 'backend') o.backend = parseBackend(String(v), '--backend');
    else if (k === 'widths') o.widths = list(String(v)).map((w) => intArg(w));
    else if (k === 'variants') o.variants = list(String(v));
    else o[STUDY_NAME[k] ?? k] = v;
  }
  return o as O;
}

const commandLine = () => `sortednet ${process.argv.slice(2).join(' ')}`;

export const registerPadnet: RegisterCommand = (program, exit) => {
  const d = FASHION_DEFAULTS;
  program
    .command('padnet')
    .description('PAD-Net on Fashion-MNIST: static vs DY-Conv vs PAD (IMP) vs random partition')
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .option('--train-subset <n>', `training images (${d.train})`, intArg)
    .option('--test-subset <n>', `test images (${d.test})`, intArg)
    .option('--epochs <n>', `epochs (${d.epochs})`, intArg)
    .option('--batch-size <n>', `batch size (${d.batch})`, intArg)
    .addOption(hiddenAlias('train'))
    .addOption(hiddenAlias('test'))
    .addOption(hiddenAlias('batch'))
    .option('--lr <x>', `learning rate (${d.lr})`, numArg)
    .option('--widths <list>', `stage widths (${d.widths.join(',')})`)
    .option('--kernels <k>', `dynamic kernels K (${d.kernels})`, intArg)
    .option('--variants <list>', `static, dynamic, pad:<kappa>, random:<kappa> (${d.variants.join(',')})`)
    .option('--rounds <t>', `IMP rounds T (${d.rounds})`, intArg)
    .option('--calibration <n>', `calibration mini-batches for IMP (${d.calibration})`, intArg)
    .option('--anneal <n>', `epochs of temperature annealing 30 → 1 (${d.anneal})`, numArg)
    .option('--seed <n>', `seed (${d.seed})`, intArg)
    .option('--out <dir>', `results folder (${d.out})`)
    .action(async (f: Flags) => {
      await runFashionReport(studyOptions<FashionOptions>(d, f), commandLine());
      exit(0);
    });

  const s = SPAM_DEFAULTS;
  program
    .command('padnet-spam')
    .description('PAD-MoE on SpamAssassin: dense vs MoE vs PAD-MoE (IMP) vs random partition')
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .option('--epochs <n>', `epochs (${s.epochs})`, intArg)
    .option('--batch-size <n>', `batch size (${s.batch})`, intArg)
    .addOption(hiddenAlias('batch'))
    .option('--lr <x>', `learning rate (${s.lr})`, numArg)
    .option('--max-len <n>', `byte tokens per email (${s.maxLen})`, intArg)
    .option('--dim <n>', `model width (${s.dim})`, intArg)
    .option('--ffn <n>', `FFN hidden width per expert (${s.ffn})`, intArg)
    .option('--layers <n>', `transformer blocks (${s.layers})`, intArg)
    .option('--experts <n>', `experts E (${s.experts})`, intArg)
    .option('--top-k <n>', `experts per token k (${s.topK})`, intArg)
    .option('--variants <list>', `dense, moe, pad:<kappa>, random:<kappa> (${s.variants.join(',')})`)
    .option('--train-subset <n>', 'keep only the first N training emails (0 = all)', intArg)
    .addOption(hiddenAlias('train'))
    .option('--seed <n>', `seed (${s.seed})`, intArg)
    .option('--out <dir>', `results folder (${s.out})`)
    .action(async (f: Flags) => {
      await runSpamReport(studyOptions<SpamOptions>(s, f), commandLine());
      exit(0);
    });
};
