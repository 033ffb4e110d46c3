/** One sub-model as a standalone, smaller run (`sortednet extract` calls it inside `intoNewFolder`). */
import { initEngine } from '../engine/backend.js';
import { buildModel, specOf } from '../models/index.js';
import { subModelId, type SubModel } from '../sorted/submodel.js';
import { extractSubModel } from '../models/extract.js';
import { loadCheckpoint, saveCheckpoint, writeRunConfig } from '../io/checkpoint.js';
import type { RunConfig } from './run_config.js';

export async function extractInto(
  runDir: string,
  c: RunConfig | null,
  out: string,
  sub: SubModel,
): Promise<void> {
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
