/** A trained run as the server needs it: the model, its grid's sub-models with costs and accuracy. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint } from '../io/checkpoint.js';
import { Grid } from '../sorted/grid.js';
import { parseEvalJson } from '../train/eval_json.js';
import { servedSubModels } from './ladder.js';
import { TOKENIZER_FILE } from '../infer/load_lm.js';
import { BpeTokenizer } from '../tokenizer/bpe.js';
import type { ServedModel } from './types.js';

export async function loadServedModel(runDir: string): Promise<ServedModel> {
  const { model, meta, extraFiles } = await loadCheckpoint(runDir);
  const tokenizerFile = extraFiles.get(meta.preprocess?.tokenizer ?? TOKENIZER_FILE);
  const grid = new Grid(meta.grid, model);
  const evalPath = join(runDir, 'eval.json');
  const rows = existsSync(evalPath)
    ? parseEvalJson(readFileSync(evalPath, 'utf8'), evalPath, `run 'sortednet eval --run ${runDir}' again`)
    : [];
  return {
    model,
    subs: servedSubModels(grid.entries, rows),
    preprocess: meta.preprocess,
    meta,
    tokenizer: tokenizerFile
      ? BpeTokenizer.fromHuggingFaceJson(new TextDecoder().decode(tokenizerFile), `${runDir}/tokenizer`)
      : undefined,
    ...(meta.preprocess?.trainedContext !== undefined
      ? { trainedContext: meta.preprocess.trainedContext }
      : {}),
  };
}
