/** `sortednet extract`: one sub-model as a standalone, smaller checkpoint. */
import { initEngine } from '../../engine/backend.js';
import { buildModel, specOf } from '../../models/index.js';
import { parseSubModel, subModelId, type SubModel } from '../../sorted/submodel.js';
import { extractSubModel } from '../../models/extract.js';
import { loadCheckpoint, saveCheckpoint, writeRunConfig } from '../../io/checkpoint.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { resolveSubRun } from '../individual.js';
import { intoNewFolder, sourceRun } from '../out_folder.js';
import type { RunConfig } from '../run_config.js';

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

async function extractInto(runDir: string, c: RunConfig | null, out: string, sub: SubModel): Promise<void> {
  await initEngine('cpu');
  const { model, meta, extraFiles } = await loadCheckpoint(runDir);
  const small = extractSubModel(model, sub, (cfg) => buildModel(specOf(model, cfg)));
  saveCheckpoint(out, {
    model: small,
    grid: {},
    step: meta.step,
    seed: meta.seed,
    dataset: meta.dataset,
    preprocess: meta.preprocess,
    // The files the model needs beside its weights (an LM's tokenizer) go with it.
    extraFiles: Object.fromEntries(extraFiles),
  });
  if (c) {
    writeRunConfig(out, JSON.stringify({ ...c, model: specOf(small), grid: {} }, null, 2) + '\n');
  }
  console.log(
    `extracted ${subModelId(sub)}: ${small.parameterCount()} parameters (shared model: ${model.parameterCount()}) → ${out}`,
  );
}
