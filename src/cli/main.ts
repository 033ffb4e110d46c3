/** The `sortednet` command line: one file per command in ./commands, parsed by commander. */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import type { RegisterCommand } from './command.js';
import { reportError, throwOnParseErrors, usageError } from './errors.js';
import { registerTrain } from './commands/train.js';
import { registerEval } from './commands/eval.js';
import { registerPick } from './commands/pick.js';
import { registerExtract } from './commands/extract.js';
import { registerCompare } from './commands/compare.js';
import { registerLm } from './commands/lm.js';
import { registerGenerate } from './commands/generate.js';
import { registerPadnet } from './commands/padnet.js';
import { registerPartition } from './commands/partition.js';
import { registerCompact } from './commands/compact.js';
import { registerPresets } from './commands/presets.js';
import { registerPredict } from './commands/predict.js';
import { registerServe } from './commands/serve.js';
import { registerExportOnnx } from './commands/export_onnx.js';
import { registerSeal } from './commands/seal.js';
import { registerWebExport } from './commands/web_export.js';
import { registerImport } from './commands/import.js';
import { registerCalibrate } from './commands/calibrate.js';

const COMMANDS: RegisterCommand[] = [
  registerTrain,
  registerEval,
  registerPick,
  registerExtract,
  registerCompare,
  registerLm,
  registerGenerate,
  registerCalibrate,
  registerPadnet,
  registerPartition,
  registerCompact,
  registerPresets,
  registerPredict,
  registerServe,
  registerExportOnnx,
  registerSeal,
  registerWebExport,
  registerImport,
];

const VERSION = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** The program with every command registered; commands report their exit code through `exit`. */
export function buildProgram(exit: (code: number) => void): Command {
  const program = new Command('sortednet')
    .description('many-in-one networks (SortedNet, PAD-Net) on TensorFlow.js')
    .version(VERSION, '-v, --version')
    .option('--debug', 'show stack traces of errors')
    // Each command's help lists --debug (and --version) too; commands inherit this setting.
    .configureHelp({ showGlobalOptions: true })
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      '\nEvery command has --help. Environment: SORTEDNET_NATIVE=0 turns the native BLAS kernels off.',
    );
  for (const register of COMMANDS) register(program, exit);
  // Every command (and the program) throws instead of exiting, so main() returns a code to its caller.
  // An unknown command is commander's error with its "(Did you mean ...?)"; usageError adds the list.
  throwOnParseErrors(program);
  return program;
}

/** Runs the command line; resolves to the exit code; errors propagate with a one-line message. */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => (code = c));
  if (argv.length === 0) {
    console.log(program.helpInformation());
    return 0;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0; // --help, --version
      throw usageError(e, program.commands.find((c) => c.name() === argv[0]) ?? program);
    }
    throw e;
  }
  return code;
}

/** The process entry (bin/sortednet.js): one-line errors, exit code 1; --debug adds the stack. */
export async function cli(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  try {
    return await main(argv.filter((a) => a !== '--debug'));
  } catch (e) {
    reportError('sortednet', e, debug);
    return 1;
  }
}
