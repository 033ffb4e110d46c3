/** `sortednet presets`: the built-in model presets and their grids. */
import type { RegisterCommand } from '../command.js';
import { PRESETS } from '../../run/presets.js';

export const registerPresets: RegisterCommand = (program, exit) => {
  program
    .command('presets')
    .description('list the model presets and their grids')
    .action(() => {
      const width = Math.max(...Object.keys(PRESETS).map((k) => k.length));
      for (const [k, p] of Object.entries(PRESETS)) console.log(`${k.padEnd(width)}  ${p.description}`);
      exit(0);
    });
};
