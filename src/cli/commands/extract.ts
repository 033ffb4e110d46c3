/** `sortednet extract`: one sub-model as a standalone, smaller checkpoint. */
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { initEngine } from '../../engine/backend.js';
import { buildModel, specOf } from '../../models/index.js';
import { parseSubModel, subModelId, type SubModel } from '../../sorted/submodel.js';
import { acquireRunLock } from '../../io/lock.js';
import { extractSubModel } from '../../models/extract.js';
import { hasCheckpoint, loadCheckpoint, saveCheckpoint } from '../../io/checkpoint.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { need } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { readRunJson } from '../run_folder.js';
import { resolveSubRun } from '../individual.js';

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
      if (hasCheckpoint(out))
        throw new Error(`${out} already holds a checkpoint; choose an empty --out folder`);
      const existed = existsSync(out);
      const lock = acquireRunLock(out, 'extract');
      try {
        await extractInto(runDir, out, sub);
      } finally {
        lock.release();
        if (!existed && readdirSync(out).length === 0) rmdirSync(out); // failed before writing
      }
      exit(0);
    });
};

async function extractInto(runDir: string, out: string, sub: SubModel): Promise<void> {
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
  if (existsSync(join(runDir, 'run.json'))) {
    const c = readRunJson(runDir);
    writeFileAtomic(
      join(out, 'run.json'),
      JSON.stringify({ ...c, model: specOf(small), grid: {} }, null, 2) + '\n',
    );
  }
  console.log(
    `extracted ${subModelId(sub)}: ${small.parameterCount()} parameters (shared model: ${model.parameterCount()}) → ${out}`,
  );
}
