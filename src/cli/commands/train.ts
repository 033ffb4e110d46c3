/** `sortednet train` and `sortednet demo` (train with the README's defaults); the logic: src/run/train_folder.ts. */
import { Command } from 'commander';
import { defaultTrainConfig } from '../../train/config.js';
import { DivergenceError } from '../../train/trainer.js';
import { intArg, nonNegativeIntArg, numArg, positiveIntArg, seedArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import type { RunConfig } from '../../run/run_config.js';
import { trainFolder, type TrainFolderOptions } from '../../run/train_folder.js';
import { gridArg } from './import.js';

/** The command's flags, as commander hands them over. */
export type TrainFlags = TrainFolderOptions;

/** Exit code of a run stopped by a non-finite loss, gradient or weights. */
export const EXIT_DIVERGED = 3;

export async function commandTrain(
  flags: TrainFlags,
  base: Partial<RunConfig> = {},
  defaultRun?: string,
): Promise<number> {
  try {
    return await trainFolder(flags, base, defaultRun);
  } catch (e) {
    if (!(e instanceof DivergenceError)) throw e;
    console.error(`sortednet: ${e.message}`);
    return EXIT_DIVERGED;
  }
}

/** What a command trains when a flag is left out, as its help shows it. */
interface HelpDefaults {
  run?: string;
  model: string;
  data: string;
  steps: number;
  batchSize: number;
  testSubset?: number;
}

const d = (value: unknown) => ` (default: ${value})`;

function trainOptions(cmd: Command, defaults: HelpDefaults): Command {
  const t = defaultTrainConfig;
  return cmd
    .option(
      '--run <dir>',
      'the run folder: checkpoints, log.jsonl, eval results' + (defaults.run ? d(defaults.run) : ''),
    )
    .option('--config <file>', 'a JSON run config (fields model, data, grid, train, backend, eval)')
    .option('--model <preset>', "a model preset (see 'sortednet presets')" + d(defaults.model))
    .option(
      '--data <name|path>',
      'mnist, fashion-mnist, digits, spamassassin (token sequences), or a path to your own data; LM presets: sotu, moby-dick, text:PATH' +
        d(defaults.data),
    )
    .option('--strategy <s>', 'sorted, individual, full-only, sandwich, all-exits' + d(t.strategy))
    .option('--steps <n>', 'optimizer steps' + d(defaults.steps), intArg)
    .option('--batch-size <n>', 'examples per micro-batch' + d(defaults.batchSize), intArg)
    .option(
      '--gacc <n>',
      `sub-models (micro-batches) accumulated per step (default: ${t.gAcc}; 1 for individual)`,
      intArg,
    )
    .option('--lr <x>', 'peak learning rate' + d(t.optimizer.lr), numArg)
    .option('--optimizer <kind>', 'adamw or sgd' + d(t.optimizer.kind))
    .option(
      '--seed <n>',
      'random seed (weights, data order, sub-model draws); any integer up to ±2^53' + d(t.seed),
      seedArg,
    )
    .option('--train-subset <n>', 'use N training examples (drawn at random)' + d('all'), positiveIntArg)
    .option('--test-subset <n>', 'use N test examples' + d(defaults.testSubset ?? 'all'), positiveIntArg)
    .option(
      '--resume',
      'continue the run in --run exactly where it stopped (the flags it was started with may be repeated)',
    )
    .option(
      '--checkpoint-every <n>',
      `save a checkpoint every N steps, and at the end; 0: only at the end${d(t.checkpointEvery)}`,
      nonNegativeIntArg,
    )
    .option(
      '--keep-checkpoints <n>',
      'step folders to keep in checkpoints/' + d(t.keepCheckpoints),
      positiveIntArg,
    )
    .option(
      '--on-non-finite <what>',
      `a NaN/Inf loss or gradient: 'stop' (exit code 3) or 'skip' the step${d(t.nonFinite)}`,
    )
    .option(
      '--init-from <dir>',
      "start from the weights of a run or checkpoint folder (e.g. one 'sortednet import' wrote): its model, data and grid are the defaults; sorted fine-tuning of a pre-trained model",
    )
    .option(
      '--grid <grid>',
      'the sub-models, e.g. depth=4,6,8;width=0.5,1 or {"depth":[4,6,8]}' + d("the preset's or source's"),
      gridArg,
    )
    .option('--no-eval', 'skip the evaluation after training')
    .option('--backend <name>', 'wasm, cpu or webgpu' + d('wasm'))
    .option(
      '--label-column <name|index>',
      "your CSV's label column: a header name or a 0-based index" + d("'label'"),
    )
    .option('--delimiter <char>', "your CSV's field delimiter" + d('sniffed from , ; or tab'));
}

/** The demo: train with the README's defaults. */
const DEMO: Partial<RunConfig> = {
  model: 'resnet-small',
  data: { name: 'mnist', testSubset: 2000 },
  train: { steps: 300, batchSize: 64 },
  eval: { calibrationBatches: 10, latencyReps: 5 },
};

export const registerTrain: RegisterCommand = (program, exit) => {
  const t = defaultTrainConfig;
  trainOptions(
    program.command('train').description('train a sorted network: every sub-model of the grid in one run'),
    { model: 'resnet-small', data: 'mnist', steps: t.steps, batchSize: t.batchSize },
  ).action(async (flags: TrainFlags) => exit(await commandTrain(flags)));

  trainOptions(
    program
      .command('demo')
      .summary('the main job: a sorted ResNet on MNIST, 16 sub-models, table + plot (runs/demo)')
      .description(
        'the main job: a sorted ResNet on MNIST, 16 sub-models, table + plot (runs/demo)\n\n' +
          "The demo is 'train' with these defaults: a sorted resnet-small on MNIST (2000 test images), " +
          '300 steps, evaluated at the end (accuracy, FLOPs and latency of every sub-model: eval.json, ' +
          'plot.svg). Each run goes to a fresh folder (runs/demo, runs/demo-2, …) unless --run names one.',
      ),
    {
      run: 'runs/demo, or runs/demo-2… when taken',
      model: DEMO.model as string,
      data: DEMO.data!.name,
      steps: DEMO.train!.steps!,
      batchSize: DEMO.train!.batchSize!,
      testSubset: DEMO.data!.testSubset,
    },
  ).action(async (flags: TrainFlags) => exit(await commandTrain(flags, DEMO, 'runs/demo')));
};
