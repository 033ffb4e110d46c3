/** The `sortednet` command line: train | eval | pick | extract | compare | demo | presets. */
import { parseArgs } from 'node:util';
import { existsSync, mkdirSync, readFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { engineDescription, initEngine, parseBackend } from '../engine/backend.js';
import { buildModel, specOf, type ModelSpec, type SortedModel } from '../models/index.js';
import { Grid, type GridSpec } from '../sorted/grid.js';
import { parseSubModel, subModelId } from '../sorted/submodel.js';
import { extractSubModel } from '../sorted/extract.js';
import { loadDataset } from '../data/registry.js';
import { subset, type TrainTest } from '../data/dataset.js';
import { resolveTrainConfig, type TrainConfig } from '../train/config.js';
import { train } from '../train/trainer.js';
import { evaluateGrid, type EvalRow } from '../train/evaluate.js';
import {
  hasCheckpoint,
  loadCheckpoint,
  saveCalibration,
  saveCheckpoint,
  readCheckpointMeta,
} from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { accuracyFlopsSvg, formatTable, toCsv } from '../io/report.js';
import { candidatesFrom, pickSubModel } from '../infer/pick.js';
import { getPreset, PRESETS } from './presets.js';
import { runPadExperimentCli } from '../dynamic/experiment.js';
import { Transformer, type TransformerConfig } from '../models/transformer.js';
import { byteTokenSplit } from '../data/tokens.js';
import { loadMobyDick, decodeBytes } from '../data/text.js';
import { evaluateLm } from '../train/evaluate_lm.js';
import { greedy, speculative, earlyExit } from '../infer/generate.js';
import { readRunConfig, type RunConfig } from './run_config.js';

const USAGE = `sortednet — many-in-one networks (SortedNet) on TensorFlow.js

usage:
  sortednet demo [--run DIR] [--backend wasm|cpu|webgpu]
      the README's main job: a sorted ResNet on MNIST, 16 sub-models, table + plot
  sortednet train --run DIR [--config FILE] [--model PRESET] [--data NAME|PATH] [--strategy S]
                  [--steps N] [--batch-size N] [--gacc N] [--lr X] [--optimizer sgd|adamw] [--seed N]
                  [--train-subset N] [--test-subset N] [--resume] [--no-eval]
      strategies: sorted (default), individual, full-only, sandwich, all-exits
  sortednet eval --run DIR                      every sub-model: params, FLOPs, accuracy, latency
  sortednet pick --run DIR (--max-flops X | --max-params N | --max-latency-ms T)
  sortednet extract --run DIR --sub depth=3,width=0.5 --out DIR
  sortednet compare --runs DIR,DIR,... --out FILE.svg
  sortednet lm --run DIR [--steps N] [--seed N]
      a sorted transformer LM on Moby Dick (bytes): per-depth perplexity, then greedy vs
      self-speculative decoding (shallow draft, full verify) vs instance-aware early exit
  sortednet padnet [--variants static,dynamic,pad:0.3,pad:0.5,random:0.3] [--epochs N] [--train N] [--out DIR]
      PAD-Net on Fashion-MNIST: static vs DY-Conv vs PAD (IMP) vs random partition, side by side
  sortednet partition --kappa K [--rounds T] [--method imp|random] [--epochs N] [--out DIR]
      Iterative Mode Partition of a PAD ResNet at dynamic ratio K, then train, deploy and report
  sortednet presets                             list model presets
common: --backend wasm (default) | cpu | webgpu; SORTEDNET_NATIVE=0 turns the native BLAS kernels off
`;

const OPTIONS = {
  run: { type: 'string' },
  config: { type: 'string' },
  model: { type: 'string' },
  data: { type: 'string' },
  strategy: { type: 'string' },
  steps: { type: 'string' },
  'batch-size': { type: 'string' },
  gacc: { type: 'string' },
  lr: { type: 'string' },
  optimizer: { type: 'string' },
  seed: { type: 'string' },
  'train-subset': { type: 'string' },
  'test-subset': { type: 'string' },
  resume: { type: 'boolean' },
  'no-eval': { type: 'boolean' },
  backend: { type: 'string' },
  'max-flops': { type: 'string' },
  'max-params': { type: 'string' },
  'max-latency-ms': { type: 'string' },
  sub: { type: 'string' },
  out: { type: 'string' },
  runs: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Flags = Partial<Record<keyof typeof OPTIONS, string | boolean>>;

function num(flags: Flags, key: keyof typeof OPTIONS, integer = false): number | undefined {
  const v = flags[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new Error(`--${key}: '${v}' is not ${integer ? 'an integer' : 'a number'}`);
  }
  return n;
}

function need(flags: Flags, key: keyof typeof OPTIONS, command: string): string {
  const v = flags[key];
  if (typeof v !== 'string' || v === '') throw new Error(`${command} needs --${key}; see 'sortednet --help'`);
  return v;
}

/** The run config from defaults < --config file < flags. */
function runConfigFrom(flags: Flags, base: Partial<RunConfig> = {}): RunConfig {
  const file = typeof flags.config === 'string' ? readRunConfig(flags.config) : {};
  const c: RunConfig = {
    model: 'resnet-small',
    data: { name: 'mnist' },
    train: {},
    ...base,
    ...file,
  };
  c.train = { ...(base.train ?? {}), ...(file.train ?? {}) };
  if (typeof flags.model === 'string') c.model = flags.model;
  if (typeof flags.data === 'string') c.data = { ...c.data, name: flags.data };
  const ts = num(flags, 'train-subset', true);
  const vs = num(flags, 'test-subset', true);
  if (ts !== undefined) c.data = { ...c.data, trainSubset: ts };
  if (vs !== undefined) c.data = { ...c.data, testSubset: vs };
  const t = c.train;
  if (typeof flags.strategy === 'string') t.strategy = flags.strategy as TrainConfig['strategy'];
  const set = <K extends keyof TrainConfig>(k: K, v: TrainConfig[K] | undefined) =>
    v !== undefined && (t[k] = v);
  set('steps', num(flags, 'steps', true));
  set('batchSize', num(flags, 'batch-size', true));
  set('gAcc', num(flags, 'gacc', true));
  set('seed', num(flags, 'seed', true));
  const lr = num(flags, 'lr');
  if (lr !== undefined || typeof flags.optimizer === 'string') {
    t.optimizer = { ...(t.optimizer ?? { kind: 'adamw', lr: 3e-3 }) };
    if (lr !== undefined) t.optimizer.lr = lr;
    if (typeof flags.optimizer === 'string') t.optimizer.kind = flags.optimizer as 'sgd' | 'adamw';
  }
  if (typeof flags.backend === 'string') c.backend = parseBackend(flags.backend, '--backend');
  return c;
}

function loadData(c: RunConfig): TrainTest {
  const d = loadDataset(c.data.name);
  return {
    train: c.data.trainSubset ? subset(d.train, c.data.trainSubset, 1) : d.train,
    test: c.data.testSubset ? subset(d.test, c.data.testSubset, 2) : d.test,
  };
}

function modelSpecFor(c: RunConfig, data: TrainTest): { spec: ModelSpec; grid: GridSpec } {
  const shape = { channels: data.train.channels, size: data.train.height, classes: data.train.numClasses };
  if (typeof c.model === 'string') {
    const p = getPreset(c.model);
    return { spec: p.model(shape), grid: c.grid ?? p.grid };
  }
  if (!c.grid) throw new Error('a config with an explicit model spec needs a grid');
  return { spec: c.model, grid: c.grid };
}

/** `base`, or `base-2`, `base-3`… : the first that holds no run, so earlier results are never overwritten. */
function freshFolder(base: string): string {
  for (let i = 1; ; i++) {
    const dir = i === 1 ? base : `${base}-${i}`;
    if (!hasCheckpoint(dir)) return dir;
  }
}

function writeEval(runDir: string, rows: EvalRow[], title: string): void {
  writeFileAtomic(join(runDir, 'eval.json'), JSON.stringify(rows, null, 2) + '\n');
  writeFileAtomic(join(runDir, 'eval.csv'), toCsv(rows));
  writeFileAtomic(
    join(runDir, 'plot.svg'),
    accuracyFlopsSvg([{ name: title, rows }], `${title}: accuracy vs FLOPs`),
  );
}

async function commandTrain(
  flags: Flags,
  base: Partial<RunConfig> = {},
  defaultRun?: string,
): Promise<number> {
  const runDir = (flags.run as string | undefined) ?? (defaultRun && freshFolder(defaultRun));
  if (!runDir) throw new Error('train needs --run DIR (the folder for checkpoints, logs and results)');
  let c: RunConfig;
  if (flags.resume) {
    const path = join(runDir, 'run.json');
    if (!existsSync(path)) throw new Error(`--resume: ${path} not found; nothing to resume`);
    c = JSON.parse(readFileSync(path, 'utf8')) as RunConfig;
  } else {
    c = runConfigFrom(flags, base);
    if (hasCheckpoint(runDir)) {
      throw new Error(
        `${runDir} already holds a checkpoint; use --resume to continue it, or another --run folder`,
      );
    }
  }
  const tc = resolveTrainConfig(c.train);
  await initEngine(c.backend ?? 'wasm');
  const data = loadData(c);
  const { spec, grid: gridSpec } = modelSpecFor(c, data);
  mkdirSync(runDir, { recursive: true });
  writeFileAtomic(join(runDir, 'run.json'), JSON.stringify(c, null, 2) + '\n');
  const logPath = join(runDir, 'log.jsonl');
  const log = (rec: object) => appendFileSync(logPath, JSON.stringify(rec) + '\n');
  const title = `${typeof c.model === 'string' ? c.model : spec.family} ${tc.strategy}`;
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
  if (flags['no-eval']) return 0;
  return evaluateRun(runDir, model, grid, data, c, title);
}

function evaluateRun(
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

async function commandEval(flags: Flags): Promise<number> {
  const runDir = need(flags, 'run', 'eval');
  const c = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')) as RunConfig;
  await initEngine(flags.backend ? parseBackend(flags.backend as string) : (c.backend ?? 'wasm'));
  const { model, meta } = await loadCheckpoint(runDir);
  const data = loadData(c);
  return evaluateRun(
    runDir,
    model,
    new Grid(meta.grid, model),
    data,
    c,
    `${typeof c.model === 'string' ? c.model : meta.model.family} ${meta.train?.strategy ?? ''}`,
  );
}

function readEvalRows(runDir: string): EvalRow[] {
  const path = join(runDir, 'eval.json');
  if (!existsSync(path)) throw new Error(`${path} not found; run 'sortednet eval --run ${runDir}' first`);
  return JSON.parse(readFileSync(path, 'utf8')) as EvalRow[];
}

async function commandPick(flags: Flags): Promise<number> {
  const runDir = need(flags, 'run', 'pick');
  const budget = {
    maxFlops: num(flags, 'max-flops'),
    maxParams: num(flags, 'max-params'),
    maxLatencyMs: num(flags, 'max-latency-ms'),
  };
  let candidates;
  if (existsSync(join(runDir, 'eval.json'))) candidates = candidatesFrom(readEvalRows(runDir));
  else {
    await initEngine('cpu');
    const meta = readCheckpointMeta(runDir);
    const model = buildModel(meta.model);
    candidates = candidatesFrom(new Grid(meta.grid, model).entries);
  }
  const best = pickSubModel(candidates, budget);
  if (!best) {
    const min = candidates.reduce((a, b) => (a.flops < b.flops ? a : b));
    console.error(
      `no sub-model fits; the smallest is ${min.id} (${min.flops} FLOPs, ${min.params} params${min.latencyMs !== undefined ? `, ${min.latencyMs.toFixed(3)} ms` : ''})`,
    );
    return 2;
  }
  console.log(JSON.stringify(best));
  return 0;
}

async function commandExtract(flags: Flags): Promise<number> {
  const runDir = need(flags, 'run', 'extract');
  const out = need(flags, 'out', 'extract');
  const sub = parseSubModel(need(flags, 'sub', 'extract'), '--sub');
  if (hasCheckpoint(out)) throw new Error(`${out} already holds a checkpoint; choose an empty --out folder`);
  await initEngine('cpu');
  const { model, meta } = await loadCheckpoint(runDir);
  const small = extractSubModel(model, sub, (cfg) => buildModel(specOf(model, cfg)));
  saveCheckpoint(out, { model: small, grid: {}, step: meta.step, seed: meta.seed, dataset: meta.dataset });
  if (existsSync(join(runDir, 'run.json'))) {
    const c = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')) as RunConfig;
    writeFileAtomic(
      join(out, 'run.json'),
      JSON.stringify({ ...c, model: specOf(small), grid: {} }, null, 2) + '\n',
    );
  }
  console.log(
    `extracted ${subModelId(sub)}: ${small.parameterCount()} parameters (shared model: ${model.parameterCount()}) → ${out}`,
  );
  return 0;
}

async function commandCompare(flags: Flags): Promise<number> {
  const runs = need(flags, 'runs', 'compare').split(',').filter(Boolean);
  const series = runs.map((r) => {
    const c = existsSync(join(r, 'run.json'))
      ? (JSON.parse(readFileSync(join(r, 'run.json'), 'utf8')) as RunConfig)
      : null;
    return { name: c?.train?.strategy ?? r, rows: readEvalRows(r), dir: r };
  });
  // One table: accuracy of every sub-model under every run, then each run's training time.
  const ids = series[0].rows.map((r) => r.id);
  const acc = series.map((s) => new Map(s.rows.map((r) => [r.id, r.accuracy])));
  const first = series[0].name;
  console.log(
    `| sub-model | MFLOPs | ${series.map((s) => s.name).join(' | ')} | ${series
      .slice(1)
      .map((s) => `${first} / ${s.name}`)
      .join(' | ')} |`,
  );
  console.log(
    `|---|---:|${series.map(() => '---:').join('|')}|${series
      .slice(1)
      .map(() => '---:')
      .join('|')}|`,
  );
  for (const [i, id] of ids.entries()) {
    const a = acc.map((m) => m.get(id));
    const pct = a.map((v) => (v === undefined ? '—' : (100 * v).toFixed(2)));
    const ratios = a
      .slice(1)
      .map((v) => (v === undefined || a[0] === undefined ? '—' : (a[0] / v).toFixed(3)));
    console.log(
      `| ${id} | ${(series[0].rows[i].flops / 1e6).toFixed(2)} | ${pct.join(' | ')} | ${ratios.join(' | ')} |`,
    );
  }
  const seconds = series.map((s) =>
    existsSync(join(s.dir, 'train_time.json'))
      ? (JSON.parse(readFileSync(join(s.dir, 'train_time.json'), 'utf8')).seconds as number)
      : NaN,
  );
  console.log(
    `| training time (s) | | ${seconds.map((t) => t.toFixed(1)).join(' | ')} | ${seconds
      .slice(1)
      .map((t) => (seconds[0] / t).toFixed(2))
      .join(' | ')} |`,
  );
  const out = (flags.out as string | undefined) ?? 'compare.svg';
  writeFileAtomic(out, accuracyFlopsSvg(series, 'accuracy vs FLOPs per strategy'));
  console.log(`\nwrote ${out}`);
  return 0;
}

async function commandLm(flags: Flags): Promise<number> {
  const runDir = (flags.run as string | undefined) ?? freshFolder('runs/lm');
  if (hasCheckpoint(runDir) && !flags.resume) {
    throw new Error(`${runDir} already holds a checkpoint; use --resume or another --run folder`);
  }
  await initEngine(flags.backend ? parseBackend(flags.backend as string, '--backend') : 'wasm');
  console.log(engineDescription());
  const seqLen = 64;
  const { train: trainSet, test } = byteTokenSplit('moby-dick', loadMobyDick(), seqLen);
  const config: TransformerConfig = {
    task: 'lm',
    vocab: trainSet.vocab,
    dim: 128,
    heads: 4,
    headDim: 32,
    ffn: 512,
    layers: 6,
    maxLen: seqLen,
  };
  const model = new Transformer(config, num(flags, 'seed', true) ?? 1);
  const grid = new Grid({ depth: [1, 2, 3, 4, 5, 6] }, model);
  const tc = resolveTrainConfig({
    steps: num(flags, 'steps', true) ?? 300,
    batchSize: 8,
    gAcc: 2,
    warmupSteps: 20,
    seed: num(flags, 'seed', true) ?? 1,
    strategy: (flags.strategy as TrainConfig['strategy']) ?? 'sorted',
  });
  console.log(
    `sorted LM on Moby Dick: ${trainSet.n} train windows of ${seqLen} bytes; ${grid.size} depths; ${tc.steps} steps`,
  );
  mkdirSync(runDir, { recursive: true });
  const r = await train(model, grid, trainSet, tc, {
    runDir,
    resume: flags.resume === true,
    datasetName: 'moby-dick',
    progress: true,
  });
  console.log(`trained in ${r.seconds.toFixed(1)} s`);
  const rows = evaluateLm(model, grid.entries, test);
  console.log('\nsub-model  params   perplexity  next-byte acc %');
  for (const row of rows)
    console.log(
      `${row.id.padEnd(9)}  ${String(row.params).padStart(7)}  ${row.perplexity.toFixed(2).padStart(10)}  ${(100 * row.accuracy).toFixed(1).padStart(15)}`,
    );
  // Decoding: the same prompts for every method; greedy output of the full model is the reference.
  const prompts = [0, 1, 2, 3].map((i) => Array.from(test.tokens.subarray(i * 997, i * 997 + 16)));
  const steps = seqLen - 16;
  const runs = {
    greedy: prompts.map((p) => greedy(model, p, steps)),
    speculative: prompts.map((p) => speculative(model, p, steps, { draft: { depth: 2 } })),
    earlyExit: prompts.map((p) => earlyExit(model, p, steps, { exits: [2, 4, 6], thresholds: [0.9, 0.8] })),
  };
  const ms = (k: keyof typeof runs) => runs[k].reduce((a, s) => a + s.ms, 0);
  const same = runs.speculative.every((s, i) => s.tokens.join() === runs.greedy[i].tokens.join());
  const accepted =
    runs.speculative.reduce((a, s) => a + s.accepted, 0) /
    runs.speculative.reduce((a, s) => a + s.proposed, 0);
  const agree =
    runs.earlyExit.reduce(
      (a, s, i) => a + s.tokens.filter((t, j) => t === runs.greedy[i].tokens[j]).length,
      0,
    ) /
    (prompts.length * steps);
  const depth = runs.earlyExit.reduce((a, s) => a + (s.meanExitDepth ?? 0), 0) / prompts.length;
  const summary = {
    greedyMs: ms('greedy'),
    speculativeMs: ms('speculative'),
    speculativeSpeedup: ms('greedy') / ms('speculative'),
    speculativeIdenticalToGreedy: same,
    draftAcceptance: accepted,
    earlyExitMs: ms('earlyExit'),
    earlyExitSpeedup: ms('greedy') / ms('earlyExit'),
    earlyExitMeanDepth: depth,
    earlyExitAgreementWithGreedy: agree,
    sample: decodeBytes(Int32Array.from([...prompts[0], ...runs.greedy[0].tokens])),
  };
  writeFileAtomic(join(runDir, 'lm_eval.json'), JSON.stringify({ rows, decoding: summary }, null, 2) + '\n');
  console.log(
    `\ngreedy (full, ${config.layers} layers): ${summary.greedyMs.toFixed(0)} ms for ${prompts.length}×${steps} bytes`,
  );
  console.log(
    `speculative (draft depth 2, adaptive k): ${summary.speculativeMs.toFixed(0)} ms, ${summary.speculativeSpeedup.toFixed(2)}× — identical to greedy: ${same}, draft acceptance ${(100 * accepted).toFixed(0)}%`,
  );
  console.log(
    `early exit (exits 2/4/6, thresholds 0.9/0.8): ${summary.earlyExitMs.toFixed(0)} ms, ${summary.earlyExitSpeedup.toFixed(2)}×, mean depth ${depth.toFixed(2)}, agrees with greedy on ${(100 * agree).toFixed(0)}% of bytes`,
  );
  console.log(`sample: ${JSON.stringify(summary.sample)}`);
  return same ? 0 : 3;
}

async function commandPartition(args: string[]): Promise<number> {
  const rest: string[] = [];
  let kappa: string | undefined;
  let method = 'imp';
  for (let i = 0; i < args.length; i += 2) {
    if (args[i] === '--kappa') kappa = args[i + 1];
    else if (args[i] === '--method') method = args[i + 1];
    else rest.push(args[i], args[i + 1]);
  }
  if (kappa === undefined) throw new Error('partition needs --kappa K (the dynamic ratio, in (0, 1])');
  if (method !== 'imp' && method !== 'random') throw new Error(`--method: '${method}' is not imp or random`);
  await runPadExperimentCli(['--variants', `${method === 'imp' ? 'pad' : 'random'}:${kappa}`, ...rest]);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // The PAD-Net commands take their own flags (src/dynamic/experiment.ts).
  if (command === 'padnet') return runPadExperimentCli(rest).then(() => 0);
  if (command === 'partition') return commandPartition(rest);
  let flags: Flags;
  try {
    flags = parseArgs({ args: rest, options: OPTIONS, allowPositionals: false }).values as Flags;
  } catch (e) {
    throw new Error(`${(e as Error).message}\n\n${USAGE}`, { cause: e });
  }
  if (flags.help === true && command !== undefined) {
    // `sortednet <command> --help` explains rather than runs (a training run would start otherwise).
    console.log(USAGE);
    return 0;
  }
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return 0;
    case 'demo':
      return commandTrain(
        flags,
        {
          model: 'resnet-small',
          data: { name: 'mnist', testSubset: 2000 },
          train: { steps: 300, batchSize: 64, gAcc: 4 },
          eval: { calibrationBatches: 10, latencyReps: 5 },
        },
        'runs/demo',
      );
    case 'train':
      return commandTrain(flags);
    case 'eval':
      return commandEval(flags);
    case 'pick':
      return commandPick(flags);
    case 'extract':
      return commandExtract(flags);
    case 'compare':
      return commandCompare(flags);
    case 'lm':
      return commandLm(flags);
    case 'presets':
      for (const [k, p] of Object.entries(PRESETS)) console.log(`${k.padEnd(14)} ${p.description}`);
      return 0;
    default:
      throw new Error(`unknown command '${command}'\n\n${USAGE}`);
  }
}
