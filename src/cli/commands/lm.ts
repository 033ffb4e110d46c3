/**
 * `sortednet lm`: the language-model quick start. Trains an LM preset (a byte-level BPE tokenizer
 * first) on a corpus, reports perplexity per exit, and shows a greedy continuation; the same as
 * `sortednet train --model lm-small --data moby-dick` followed by `sortednet generate`.
 */
import { hasCheckpoint } from '../../io/checkpoint.js';
import { intArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { freshFolder } from '../../run/run_folder.js';
import { runGenerate, trainLmRun } from '../../run/lm_run.js';
import type { TrainConfig } from '../../train/config.js';
import { parseBackend } from '../../engine/backend.js';

interface LmFlags {
  run?: string;
  model?: string;
  data?: string;
  steps?: number;
  seed?: number;
  strategy?: string;
  resume?: boolean;
  backend?: string;
}

export const registerLm: RegisterCommand = (program, exit) => {
  program
    .command('lm')
    .description(
      'train a sorted LM (BPE tokenizer, LLaMA-style, exits at every depth), then perplexity per exit and a sample',
    )
    .option('--run <dir>', 'the run folder (default runs/lm)')
    .option('--model <preset>', 'lm-small (default) or lm-tiny')
    .option('--data <corpus>', 'moby-dick (default), sotu or text:PATH (a UTF-8 file or folder)')
    .option('--steps <n>', "optimizer steps (the preset's by default)", intArg)
    .option('--seed <n>', 'seed (1)', intArg)
    .option('--strategy <s>', 'sorted (default), all-exits, full-only')
    .option('--resume', 'continue the run')
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .action(async (flags: LmFlags) => {
      const runDir = flags.run ?? freshFolder('runs/lm');
      if (hasCheckpoint(runDir) && !flags.resume)
        throw new Error(`${runDir} already holds a checkpoint; use --resume or another --run folder`);
      const train: Partial<TrainConfig> = {};
      if (flags.steps !== undefined) train.steps = flags.steps;
      if (flags.seed !== undefined) train.seed = flags.seed;
      if (flags.strategy !== undefined) train.strategy = flags.strategy as TrainConfig['strategy'];
      await trainLmRun(
        runDir,
        {
          model: flags.model ?? 'lm-small',
          data: { name: flags.data ?? 'moby-dick' },
          train,
          backend: flags.backend ? parseBackend(flags.backend, '--backend') : undefined,
        },
        { resume: flags.resume },
      );
      console.log('\nA greedy continuation (sortednet generate --run DIR --prompt TEXT for more):');
      exit(await runGenerate({ run: runDir, prompt: 'The ', maxTokens: 40 }));
    });
};
