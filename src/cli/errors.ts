/**
 * How a command line reports errors, shared by `sortednet` (./main.ts) and the bench scripts: the
 * user's mistakes as one line, exit code 1; other errors said to be bugs; stacks only with --debug.
 */
import { CommanderError, type Command } from 'commander';

/** A mistake in how the command was called: shown as one line, never as a stack trace. */
export class UsageError extends Error {}

/** Makes commander throw a CommanderError instead of printing and exiting, on `cmd` and its subcommands. */
export function throwOnParseErrors(cmd: Command): Command {
  cmd.exitOverride().configureOutput({ outputError: () => {} });
  cmd.commands.forEach(throwOnParseErrors);
  return cmd;
}

/**
 * commander's error as one line; an unknown option lists the known options of `cmd`, an unknown
 * command its commands.
 */
export function usageError(e: CommanderError, cmd: Command): UsageError {
  // commander puts its "(Did you mean --x?)" on a second line.
  const msg = e.message.replace(/^error: /, '').replace(/\n/g, ' ');
  const known =
    e.code === 'commander.unknownOption'
      ? `; known options of '${cmd.name()}': ${cmd.options.map((o) => o.long).join(' ')}`
      : e.code === 'commander.unknownCommand'
        ? `; commands: ${cmd.commands.map((c) => c.name()).join(', ')}`
        : '';
  return new UsageError(`${msg}${known}`);
}

/** Prints `e` for the user of `program`: one line, a bug said to be one, the stack with `debug`. */
export function reportError(program: string, e: unknown, debug: boolean): void {
  const err = e instanceof Error ? e : new Error(String(e));
  // Programming errors (TypeError, RangeError, ...) are ours, not the user's: say so.
  const internal = !(err instanceof UsageError) && err.constructor !== Error;
  const label = debug
    ? 'internal error (a bug; please report it with the stack below)'
    : 'internal error (a bug; rerun with --debug and report it)';
  console.error(internal ? `${program}: ${label}: ${err.message}` : `${program}: ${err.message}`);
  if (debug) console.error(err.stack);
}
