/** `sortednet calibrate-exit`: early-exit thresholds for a wanted agreement, from a text file. */
import { InvalidArgumentError } from 'commander';
import { initEngine, parseBackend } from '../../engine/backend.js';
import { intArg, listArg, measureArg, need, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { runCalibrateExit, type CalibrateFlags } from '../../run/calibrate_run.js';

const sourceArg = (v: string): 'text' | 'greedy' => {
  if (v !== 'text' && v !== 'greedy')
    throw new InvalidArgumentError(`'${v}' is not a source; use greedy (the model's continuations) or text`);
  return v;
};

export const registerCalibrate: RegisterCommand = (program, exit) => {
  program
    .command('calibrate-exit')
    .description(
      "early-exit thresholds that keep a wanted share of tokens equal to the full model's (CALM-style), measured on a text",
    )
    .option('--run <dir>', 'an LM run folder')
    .option('--text <file>', "a UTF-8 text file (default: the run corpus' validation split)")
    .option(
      '--agreement <p>',
      "wanted share of tokens equal to the full model's, e.g. 0.97 (default 0.97)",
      numArg,
    )
    .option(
      '--exits <list>',
      'exits to consider, e.g. 1,2,3 (default: every depth below the full one)',
      listArg(intArg),
    )
    .option(
      '--source <s>',
      "greedy: score the full model's greedy continuations of prompts cut from the text (default); text: score the text itself",
      sourceArg,
    )
    .option('--windows <n>', 'windows of the text to score (default 32)', intArg)
    .option('--window <n>', "tokens per window (default: the model's context, at most 128)", intArg)
    .option('--check-cost <x>', 'cost of one exit check in layers, for choosing exits (default 0.25)', numArg)
    .option(
      '--measure <m>',
      'confidence: margin (top-1 − top-2 logit gap) or probability (top softmax probability); default: the one that calibrates cheaper',
      measureArg,
    )
    .option('--json', 'print the calibration as JSON')
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .action(async (flags: Partial<CalibrateFlags> & { backend?: string }) => {
      const run = need(flags.run, '--run DIR', 'calibrate-exit');
      await initEngine(flags.backend ? parseBackend(flags.backend, '--backend') : 'wasm');
      await runCalibrateExit({ ...flags, run, agreement: flags.agreement ?? 0.97 });
      exit(0);
    });
};
