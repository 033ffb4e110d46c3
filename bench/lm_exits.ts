/**
 * Perplexity of every exit of an LM run on its corpus' validation split, for any LM run folder:
 * trained from a preset, imported from Hugging Face (`sortednet import --hf`) or fine-tuned by the
 * PyTorch package. Windows of the model's context (or --seq-len), the first --windows of them.
 *
 *   node dist/bench/lm_exits.js --run DIR [--windows 64] [--seq-len N] [--out FILE.json]
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { initEngine } from '../src/engine/backend.js';
import { formatLmRows, loadLm } from '../src/run/lm_run.js';
import { readRunJson } from '../src/run/run_folder.js';
import { loadTextCorpus } from '../src/data/text.js';
import { bpeTokenSplit } from '../src/data/tokens.js';
import { evaluateLm } from '../src/train/evaluate_lm.js';
import { Grid } from '../src/sorted/grid.js';
import { positiveIntArg } from '../src/cli/args.js';
import { benchCommand, parseBench } from './cli.js';

const a = parseBench<{ run: string; windows: number; seqLen?: number; out?: string }>(
  benchCommand('lm_exits', 'perplexity per exit of an LM run on its validation split')
    .requiredOption('--run <dir>', 'an LM run folder')
    .option('--windows <n>', 'validation windows per exit', positiveIntArg, 64)
    .option('--seq-len <n>', "window length in tokens (default: the model's context)", positiveIntArg)
    .option('--out <file>', 'also write the rows as JSON'),
);

await initEngine('wasm');
const { model, tokenizer, meta } = await loadLm(a.run);
const seqLen = a.seqLen ?? model.config.maxLen;
const corpus = loadTextCorpus(readRunJson(a.run).data.name);
const { test } = bpeTokenSplit(corpus, tokenizer, seqLen);
const t0 = performance.now();
const rows = evaluateLm(model, new Grid(meta.grid, model).entries, test, a.windows);
console.log(
  `${a.run}: ${corpus.name} validation, ${Math.min(a.windows, test.n)} windows of ${seqLen} tokens per exit, ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s, load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
);
console.log(formatLmRows(rows));
if (a.out) writeFileSync(a.out, JSON.stringify(rows, null, 2) + '\n');
