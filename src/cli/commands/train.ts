/** `sortednet train` and `sortednet demo` (train with the README's defaults). */
import { Command } from 'commander';
import { existsSync, mkdirSync, readFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { engineDescription, initEngine, parseBackend } from '../../engine/backend.js';
import { buildModel, type SortedModel } from '../../models/index.js';
import { Grid } from '../../sorted/grid.js';
import type { TrainTest } from '../../data/dataset.js';
import { resolveTrainConfig, type TrainConfig } from '../../train/config.js';
import { train } from '../../train/trainer.js';
import { evaluateGrid, type EvalRow } from '../../train/evaluate.js';
import { hasCheckpoint, saveCalibration } from '../../io/checkpoint.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { formatTable } from '../../io/report.js';
import { intArg, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { readRunConfig, type RunConfig } from '../run_config.js';
import { isLmPreset, trainLmRun } from '../lm_run.js';
import { freshFolder, loadRunData, modelSpecFor, readRunJson, runTitle, writeEval } from '../run_folder.js';

export interface TrainFlags {
  run?: string;
  config?: string;
  model?: string;
  data?: string;
  strategy?: string;
  steps?: number;
  batchSize?: number;
  gacc?: number;
  lr?: number;
  optimizer?: string;
  seed?: number;
  trainSubset?: number;
  testSubset?: number;
  resume?: boolean;
  eval?: boolean;
  backend?: string;
}

/** The run config from defaults < --config file < flags. */
function runConfigFrom(flags: TrainFlags, base: Partial<RunConfig> = {}): RunConfig {
  const file = flags.config !== undefined ? readRunConfig(flags.config) : {};
  const c: RunConfig = {
    model: 'resnet-small',
    data: { name: 'mnist' },
    train: {},
    ...base,
    ...file,
  };
  c.train = { ...(base.train ?? {}), ...(file.train ?? {}) };
  if (flags.model !== undefined) c.model = flags.model;
  if (flags.data !== undefined) c.data = { ...c.data, name: flags.data };
  if (flags.trainSubset !== undefined) c.data = { ...c.data, trainSubset: flags.trainSubset };
  if (flags.testSubset !== undefined) c.data = { ...c.data, testSubset: flags.testSubset };
  const t = c.train;
  if (flags.strategy !== undefined) t.strategy = flags.strategy as TrainConfig['strategy'];
  const set = <K extends keyof TrainConfig>(k: K, v: TrainConfig[K] | undefined) =>
    v !== undefined && (t[k] = v);
  set('steps', flags.steps);
  set('batchSize', flags.batchSize);
  set('gAcc', flags.gacc);
  set('seed', flags.seed);
  if (flags.lr !== undefined || flags.optimizer !== undefined) {
    t.optimizer = { ...(t.optimizer ?? { kind: 'adamw', lr: 3e-3 }) };
    if (flags.lr !== undefined) t.optimizer.lr = flags.lr;
    if (flags.optimizer !== undefined) t.optimizer.kind = flags.optimizer as 'sgd' | 'adamw';
  }
  if (flags.backend !== undefined) c.backend = parseBackend(flags.backend, '--backend');
  return c;
}

export async function commandTrain(
  flags: TrainFlags,
  base: Partial<RunConfig> = {},
  defaultRun?: string,
): Promise<number> {
  const runDir = flags.run ?? (defaultRun && freshFolder(defaultRun));
  if (!runDir) throw new Error('train needs --run DIR (the folder for checkpoints, logs and results)');
  let c: RunConfig;
  if (flags.resume) {
    if (!existsSync(join(runDir, 'run.json'))) {
      throw new Error(`--resume: ${join(runDir, 'run.json')} not found; nothing to resume`);
    }
    c = readRunJson(runDir);
  } else {
    c = runConfigFrom(flags, base);
    if (hasCheckpoint(runDir)) {
      throw new Error(
        `${runDir} already holds a checkpoint; use --resume to continue it, or another --run folder`,
      );
    }
  }
  if (isLmPreset(c.model)) {
    // Language models: the tokenizer is trained first and the metric is perplexity (lm_run.ts).
    await trainLmRun(runDir, c, { resume: flags.resume, noEval: flags.eval === false });
    return 0;
  }
  const tc = resolveTrainConfig(c.train);
  await initEngine(c.backend ?? 'wasm');
  const data = loadRunData(c);
  const { spec, grid: gridSpec } = modelSpecFor(c, data);
  mkdirSync(runDir, { recursive: true });
  writeFileAtomic(join(runDir, 'run.json'), JSON.stringify(c, null, 2) + '\n');
  const logPath = join(runDir, 'log.jsonl');
  const log = (rec: object) => appendFileSync(logPath, JSON.stringify(rec) + '\n');
  const title = runTitle(c, spec.family, tc.strategy);
  console.log(`run ${runDir}: ${title} on ${c.data.name} (${data.train.n} train / ${data.test.n} test)`);
  console.log(engineDescription());

  if (tc.strategy === 'individual') {
    // Every sub-model trained alone from scratch, same steps each: the quality ceiling (N× cost).
    const probe = buildModel(spec, tc.seed);
    const grid = new Grid(gridSpec, probe);
    probe.dispose();
    const rows: EvalRow[] = [];
    let seconds = 0;
    for (const entry of grid.entries) {
      const model = buildModel(spec, tc.seed);
      const weights = grid.entries.map((e) => (e.id === entry.id ? 1 : 0));
      const r = await train(
        model,
        grid,
        data.train,
        { ...tc, sampler: { weights } },
        { onStep: (s) => log({ sub: entry.id, ...s }) },
      );
      seconds += r.seconds;
      rows.push(...evaluateGrid(model, grid, data.train, data.test, c.eval, [entry]));
      console.log(
        `  ${entry.id}: ${(100 * rows[rows.length - 1].accuracy).toFixed(2)}% (${r.seconds.toFixed(1)} s)`,
      );
      model.dispose();
    }
    log({ event: 'done', seconds });
    writeFileAtomic(join(runDir, 'train_time.json'), JSON.stringify({ seconds }) + '\n');
    writeEval(runDir, rows, title);
    console.log(formatTable(rows));
    return 0;
  }

  const model = buildModel(spec, tc.seed);
  const grid = new Grid(gridSpec, model);
  console.log(
    `${grid.size} sub-models, ${model.parameterCount()} shared parameters; ${tc.steps} steps × gAcc ${tc.gAcc} × batch ${tc.batchSize}`,
  );
  const r = await train(model, grid, data.train, tc, {
    runDir,
    resume: flags.resume === true,
    datasetName: c.data.name,
    progress: true,
    onStep: log,
  });
  log({ event: 'done', seconds: r.seconds });
  const prevSeconds =
    flags.resume && existsSync(join(runDir, 'train_time.json'))
      ? JSON.parse(readFileSync(join(runDir, 'train_time.json'), 'utf8')).seconds
      : 0;
  writeFileAtomic(
    join(runDir, 'train_time.json'),
    JSON.stringify({ seconds: prevSeconds + r.seconds }) + '\n',
  );
  console.log(
    `trained ${r.steps} steps in ${r.seconds.toFixed(1)} s (${(r.samples / r.seconds).toFixed(0)} samples/s), final loss ${r.finalLoss.toFixed(4)}`,
  );
  if (flags.eval === false) return 0;
  return evaluateRun(runDir, model, grid, data, c, title);
}

export function evaluateRun(
  runDir: string,
  model: SortedModel,
  grid: Grid,
  data: TrainTest,
  c: RunConfig,
  title: string,
): number {
  console.log(
    `evaluating ${grid.size} sub-models (BN recalibrated per sub-model) on ${data.test.n} test images…`,
  );
  const rows = evaluateGrid(model, grid, data.train, data.test, c.eval);
  // Keep the calibrated BN statistics beside the weights (which stay as they are), for extract/serving.
  saveCalibration(runDir, model);
  writeEval(runDir, rows, title);
  console.log(formatTable(rows));
  console.log(`wrote ${join(runDir, 'eval.json')}, eval.csv, plot.svg`);
  return 0;
}

function trainOptions(cmd: Command): Command {
  return cmd
    .option('--run <dir>', 'the run folder: checkpoints, log.jsonl, eval results')
    .option('--config <file>', 'a JSON run config (fields model, data, grid, train, backend, eval)')
    .option('--model <preset>', "a model preset (see 'sortednet presets')")
    .option(
      '--data <name|path>',
      'mnist, fashion-mnist, digits, or a path to your own data; LM presets: sotu, moby-dick, text:PATH',
    )
    .option('--strategy <s>', 'sorted, individual, full-only, sandwich, all-exits')
    .option('--steps <n>', 'optimizer steps', intArg)
    .option('--batch-size <n>', 'examples per micro-batch', intArg)
    .option('--gacc <n>', 'sub-models (micro-batches) accumulated per step', intArg)
    .option('--lr <x>', 'peak learning rate', numArg)
    .option('--optimizer <kind>', 'adamw or sgd')
    .option('--seed <n>', 'random seed (weights, data order, sub-model draws)', intArg)
    .option('--train-subset <n>', 'use the first N training examples (shuffled)', intArg)
    .option('--test-subset <n>', 'use N test examples', intArg)
    .option('--resume', 'continue the run in --run exactly where it stopped')
    .option('--no-eval', 'skip the evaluation after training')
    .option('--backend <name>', 'wasm (default), cpu or webgpu');
}

export const registerTrain: RegisterCommand = (program, exit) => {
  trainOptions(
    program.command('train').description('train a sorted network: every sub-model of the grid in one run'),
  ).action(async (flags: TrainFlags) => exit(await commandTrain(flags)));

  trainOptions(
    program
      .command('demo')
      .description('the main job: a sorted ResNet on MNIST, 16 sub-models, table + plot (runs/demo)'),
  ).action(async (flags: TrainFlags) =>
    exit(
      await commandTrain(
        flags,
        {
          model: 'resnet-small',
          data: { name: 'mnist', testSubset: 2000 },
          train: { steps: 300, batchSize: 64, gAcc: 4 },
          eval: { calibrationBatches: 10, latencyReps: 5 },
        },
        'runs/demo',
      ),
    ),
  );
};
