/** `sortednet extract`: one sub-model as a standalone, smaller checkpoint. */
import { parseSubModel } from '../../sorted/submodel.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { resolveSubRun } from '../../run/individual.js';
import { intoNewFolder, sourceRun } from '../../run/out_folder.js';
import { extractInto } from '../../run/extract.js';

export const registerExtract: RegisterCommand = (program, exit) => {
  program
    .command('extract')
    .description('write one sub-model as a standalone checkpoint')
    .option('--run <dir>', 'the run folder')
    .option('--sub <spec>', 'the sub-model, e.g. depth=4,width=0.5')
    .option('--out <dir>', 'an empty folder for the extracted model')
    .action(async (flags: { run?: string; sub?: string; out?: string }) => {
      const out = need(flags.out, '--out DIR', 'extract');
      const sub = parseSubModel(need(flags.sub, '--sub SPEC', 'extract'), '--sub');
      // An individual run stores each sub-model in a run of its own: extract from that one.
      const runDir = resolveSubRun(need(flags.run, '--run DIR', 'extract'), flags.sub, 'extract');
      const c = sourceRun(runDir, 'extract', { deployed: true });
      await intoNewFolder(out, 'extract', () => extractInto(runDir, c, out, sub));
      exit(0);
    });
};
