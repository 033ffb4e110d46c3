/** `sortednet lm`: a sorted transformer LM on Moby Dick, per-depth perplexity and decoding. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { engineDescription, initEngine, parseBackend } from '../../engine/backend.js';
import { Grid } from '../../sorted/grid.js';
import { resolveTrainConfig, type TrainConfig } from '../../train/config.js';
import { train } from '../../train/trainer.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { hasCheckpoint } from '../../io/checkpoint.js';
import { Transformer, type TransformerConfig } from '../../models/transformer.js';
import { byteTokenSplit } from '../../data/tokens.js';
import { loadMobyDick, decodeBytes } from '../../data/text.js';
import { evaluateLm } from '../../train/evaluate_lm.js';
import { greedy, speculative, earlyExit } from '../../infer/generate.js';
import { intArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { freshFolder } from '../run_folder.js';

interface LmFlags {
  run?: string;
  steps?: number;
  seed?: number;
  strategy?: string;
  resume?: boolean;
  backend?: string;
}

async function commandLm(flags: LmFlags): Promise<number> {
  const runDir = flags.run ?? freshFolder('runs/lm');
  if (hasCheckpoint(runDir) && !flags.resume) {
    throw new Error(`${runDir} already holds a checkpoint; use --resume or another --run folder`);
  }
  await initEngine(flags.backend ? parseBackend(flags.backend, '--backend') : 'wasm');
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
  const model = new Transformer(config, flags.seed ?? 1);
  const grid = new Grid({ depth: [1, 2, 3, 4, 5, 6] }, model);
  const tc = resolveTrainConfig({
    steps: flags.steps ?? 300,
    batchSize: 8,
    gAcc: 2,
    warmupSteps: 20,
    seed: flags.seed ?? 1,
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

export const registerLm: RegisterCommand = (program, exit) => {
  program
    .command('lm')
    .description(
      'a sorted transformer LM on Moby Dick (bytes): per-depth perplexity, then greedy vs self-speculative decoding vs early exit',
    )
    .option('--run <dir>', 'the run folder (default runs/lm)')
    .option('--steps <n>', 'optimizer steps (300)', intArg)
    .option('--seed <n>', 'seed (1)', intArg)
    .option('--strategy <s>', 'sorted (default), all-exits, full-only')
    .option('--resume', 'continue the run')
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .action(async (flags: LmFlags) => exit(await commandLm(flags)));
};
