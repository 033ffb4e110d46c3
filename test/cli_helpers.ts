/** Running the `sortednet` command line inside a test. */
import { main } from '../src/cli/main.js';

/**
 * Runs the command line with its console output silenced: `args` as words, or as one line of words
 * separated by spaces. Resolves to the exit code.
 */
export async function quiet(args: readonly string[] | string): Promise<number> {
  const log = console.log;
  console.log = () => {};
  try {
    return await main(typeof args === 'string' ? args.split(' ') : [...args]);
  } finally {
    console.log = log;
  }
}
