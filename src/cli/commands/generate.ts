/** `sortednet generate`: text from a trained LM run, streamed to stdout as it is decoded. */
import { initEngine, parseBackend } from '../../engine/backend.js';
import { earlyExitArg, intArg, need, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { runGenerate, type GenerateFlags } from '../../run/lm_run.js';

export const registerGenerate: RegisterCommand = (program, exit) => {
  program
    .command('generate')
    .description(
      'generate text with a trained LM run (KV cache; greedy, sampling, early exit or speculative)',
    )
    .option('--run <dir>', 'an LM run folder (trained with an lm-* preset)')
    .option('--prompt <text>', 'the text to continue')
    .option('--max-tokens <n>', 'new tokens at most (default 100)', intArg)
    .option('--exit <depth>', 'decode with the sub-model of this depth (default: full)', intArg)
    .option('--temperature <t>', 'sampling temperature; 0 = greedy (default 0)', numArg)
    .option('--top-k <k>', 'sample among the k most likely tokens', intArg)
    .option('--top-p <p>', 'sample in the smallest set of tokens with probability ≥ p', numArg)
    .option('--seed <n>', 'sampling seed (default 0)', intArg)
    .option(
      '--early-exit <pairs>',
      'instance-aware early exit, DEPTH:THRESHOLD,… e.g. 2:0.9,4:0.8',
      earlyExitArg,
    )
    .option('--speculative', 'self-speculative decoding: a shallow draft, verified by the full model')
    .option('--draft-depth <d>', 'depth of the draft sub-model (default 2)', intArg)
    .option('--k <n>', 'draft tokens per round (default 4, adaptive)', intArg)
    .option('--no-stop', 'keep going past <|endoftext|>')
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .action(async (flags: GenerateFlags & { backend?: string }) => {
      need(flags.run, '--run DIR', 'generate');
      need(flags.prompt, '--prompt TEXT', 'generate');
      await initEngine(flags.backend ? parseBackend(flags.backend, '--backend') : 'wasm');
      exit(await runGenerate(flags));
    });
};
