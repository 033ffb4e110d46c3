/** `sortednet generate`: text from a trained LM run, streamed to stdout as it is decoded. */
import { initEngine, parseBackend } from '../../engine/backend.js';
import { earlyExitArg, intArg, measureArg, need, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { generateConfigOf, runGenerate, type GenerateFlags } from '../../run/lm_run.js';
import { parseSubModel } from '../../sorted/submodel.js';

/** Repeatable flags gather their values. */
const collect = (value: string, previous: string[] = []) => [...previous, value];

export const registerGenerate: RegisterCommand = (program, exit) => {
  program
    .command('generate')
    .description(
      'generate text with a trained LM run (KV cache; greedy by default, sampling, early exit or speculative; options as Hugging Face generate)',
    )
    .option('--run <dir>', 'an LM run folder (trained with an lm-* preset)')
    .option('--prompt <text>', 'the text to continue; repeat for a batch decoded together', collect)
    .option('--max-tokens <n>', 'new tokens at most (default 100, or what the context has left)', intArg)
    .option('--min-tokens <n>', 'no stop token before this many new tokens', intArg)
    .option('--exit <depth>', 'decode with the sub-model of this depth (default: full)', intArg)
    .option('--sample', 'sample (temperature 1 unless --temperature says otherwise); default greedy')
    .option('--temperature <t>', 'sampling temperature; 0 = greedy (default 0)', numArg)
    .option('--top-k <k>', 'sample among the k most likely tokens', intArg)
    .option('--top-p <p>', 'sample in the smallest set of tokens with probability ≥ p', numArg)
    .option('--seed <n>', 'sampling seed (default 0; sequence i of a batch uses seed + i)', intArg)
    .option(
      '--repetition-penalty <x>',
      "divide seen tokens' positive logits by x, multiply negative ones (1.2 is common)",
      numArg,
    )
    .option('--no-repeat-ngram <n>', 'never repeat an n-gram of this size', intArg)
    .option('--stop-string <text>', 'stop when the text contains this (cut before it); repeatable', collect)
    .option('--num-sequences <n>', 'sampled continuations per prompt, decoded as one batch', intArg)
    .option('--logprobs', 'print the log-probability of every new token to stderr')
    .option(
      '--early-exit <pairs>',
      'instance-aware early exit, DEPTH:THRESHOLD,… e.g. 2:0.9,4:0.8 (sortednet calibrate-exit finds thresholds)',
      earlyExitArg,
    )
    .option(
      '--exit-measure <m>',
      "early exit's confidence: probability (top softmax probability, default) or margin (top-1 − top-2 logit gap)",
      measureArg,
    )
    .option(
      '--speculative',
      'self-speculative decoding: a shallow or narrow draft, verified by the full model',
    )
    .option('--draft-depth <d>', 'depth of the draft sub-model (default 2)', intArg)
    .option(
      '--draft <spec>',
      'the draft sub-model, e.g. depth=2 or ffn=0.25 or depth=4,ffn=0.5 (narrower widths keep their own cache)',
      (v: string) => parseSubModel(v, '--draft'),
    )
    .option('--k <n>', 'draft tokens per round (default 4, adaptive)', intArg)
    .option('--confidence <p>', 'end a draft early when its top probability is below p', numArg)
    .option('--no-stop', 'keep going past <|endoftext|>')
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .action(async (flags: GenerateFlags & { backend?: string }) => {
      need(flags.run, '--run DIR', 'generate');
      need(flags.prompt, '--prompt TEXT', 'generate');
      generateConfigOf(flags); // bad options are refused before the engine starts
      await initEngine(flags.backend ? parseBackend(flags.backend, '--backend') : 'wasm');
      exit(await runGenerate(flags));
    });
};
