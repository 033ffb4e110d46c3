/**
 * The bench scripts' command line, parsed by commander as `sortednet` parses its own (src/cli/errors.ts):
 * `--help` lists the options with their defaults, an unknown option is refused with the known ones, a
 * bad value is one line naming the flag (exit code 1), and `--debug` shows stack traces.
 */
import { Command, CommanderError } from 'commander';
import { reportError, throwOnParseErrors, usageError, UsageError } from '../src/cli/errors.js';

/** The command of `node dist/bench/NAME.js`: add its options, then parseBench. */
export function benchCommand(name: string, description: string): Command {
  return new Command(`bench/${name}`)
    .description(description)
    .showSuggestionAfterError(true)
    .configureHelp({ commandUsage: (cmd) => `node dist/bench/${name}.js ${cmd.usage()}` });
}

/**
 * Parses this process's arguments into the options of `cmd`: exits 0 after --help and 1 after a mistake.
 * Errors the script throws later are reported the same way (one line, exit code 1) rather than as Node's
 * stack trace of an uncaught exception.
 */
export function parseBench<T extends object>(cmd: Command, argv = process.argv.slice(2)): T {
  const debug = argv.includes('--debug');
  const fail = (e: unknown): never => {
    reportError(cmd.name(), e, debug);
    process.exit(1);
  };
  process.on('uncaughtException', fail);
  // commander checks required options before unknown ones, so a typo in one would read as its absence.
  const required = cmd.options.filter((o) => o.mandatory);
  required.forEach((o) => o.makeOptionMandatory(false));
  try {
    throwOnParseErrors(cmd.option('--debug', 'show stack traces of errors')).parse(argv, { from: 'user' });
    for (const o of required)
      if (cmd.getOptionValue(o.attributeName()) === undefined)
        throw new UsageError(`required option '${o.flags}' not specified`);
  } catch (e) {
    if (e instanceof CommanderError && e.exitCode === 0) process.exit(0); // --help
    fail(e instanceof CommanderError ? usageError(e, cmd) : e);
  }
  return cmd.opts<T>();
}
