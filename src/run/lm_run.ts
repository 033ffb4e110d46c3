/**
 * Language-model runs from the command line: `train` with an LM preset (the tokenizer is trained
 * on the corpus first and saved in the run's checkpoint as a Hugging Face tokenizer.json), `eval`
 * (perplexity per exit) and `generate`. The commands call these; the logic lives here.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLm, TOKENIZER_FILE } from '../infer/load_lm.js';

export { loadLm, TOKENIZER_FILE };
import { readRunJson } from './run_folder.js';
import { writeFileAtomic } from '../io/atomic.js';
import { hasCheckpoint, writeRunConfig } from '../io/checkpoint.js';
import { buildModel, Transformer } from '../models/index.js';
import { Grid } from '../sorted/grid.js';
import { loadTextCorpus } from '../data/text.js';
import { bpeTokenSplit } from '../data/tokens.js';
import { trainBpe } from '../tokenizer/train_bpe.js';
import { BpeTokenizer, END_OF_TEXT, StreamDecoder } from '../tokenizer/bpe.js';
import { generate } from '../infer/generate.js';
import { trainRun } from './train_run.js';
import { resolveTrainConfig } from '../train/config.js';
import { evaluateLm, type LmEvalRow } from '../train/evaluate_lm.js';
import { getPreset } from './presets.js';
import type { RunConfig } from './run_config.js';
import { engineDescription, initEngine } from '../engine/backend.js';

/** An LM run's run.json: a preset name, a corpus (sotu, moby-dick, text:PATH) and training fields. */
export type LmRunConfig = Pick<RunConfig, 'model' | 'data' | 'train' | 'backend'>;

/** Is this preset a language model (its runs go through this file)? */
export function isLmPreset(model: unknown): boolean {
  return typeof model === 'string' && getPreset(model).lm !== undefined;
}

function lmPreset(name: RunConfig['model']) {
  if (typeof name !== 'string') throw new Error('an LM run needs a model preset name (lm-tiny, lm-small)');
  const p = getPreset(name);
  if (!p.lm) throw new Error(`preset '${name}' is not a language model; LM presets: lm-tiny, lm-small`);
  return { ...p, lm: p.lm };
}

function prepare(c: LmRunConfig, tokenizer?: BpeTokenizer) {
  const p = lmPreset(c.model);
  const seqLen = p.lm.seqLen;
  const corpus = loadTextCorpus(c.data.name);
  const tok = tokenizer ?? trainBpe(corpus.train, { vocabSize: p.lm.vocabSize });
  const data = bpeTokenSplit(corpus, tok, seqLen);
  return { preset: p, tok, data, seqLen };
}

export async function trainLmRun(
  runDir: string,
  c: LmRunConfig,
  o: { resume?: boolean; noEval?: boolean; log?: (s: string) => void } = {},
): Promise<LmEvalRow[] | null> {
  const say = o.log ?? console.log;
  const p = lmPreset(c.model);
  const tc = resolveTrainConfig({ ...p.lm.train, ...c.train });
  await initEngine(c.backend ?? 'wasm');
  say(engineDescription());
  let tokenizer: BpeTokenizer | undefined;
  // A run killed before its first save has no tokenizer yet: it starts again.
  if (o.resume && hasCheckpoint(runDir)) tokenizer = (await loadLm(runDir)).tokenizer;
  const t0 = performance.now();
  const { tok, data, seqLen } = prepare(c, tokenizer);
  if (!tokenizer)
    say(
      `trained a byte-level BPE tokenizer: ${tok.vocabSize} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  const model = buildModel(p.model({ channels: 1, size: seqLen, classes: tok.vocabSize }), tc.seed);
  const grid = new Grid(p.grid, model);
  mkdirSync(runDir, { recursive: true });
  writeRunConfig(runDir, JSON.stringify(c, null, 2) + '\n');
  say(
    `run ${runDir}: ${c.model as string} ${tc.strategy} on ${c.data.name}: ${data.train.tokens.length} train / ${data.test.tokens.length} validation tokens, windows of ${seqLen}`,
  );
  say(
    `${grid.size} exits (${grid.entries.map((e) => e.id).join(', ')}), ${model.parameterCount()} parameters; ${tc.steps} steps × gAcc ${tc.gAcc} × batch ${tc.batchSize}`,
  );
  const logPath = join(runDir, 'log.jsonl');
  const r = await trainRun(runDir, model, grid, data.train, tc, {
    resume: o.resume,
    datasetName: c.data.name,
    progress: true,
    onStep: (s) => appendFileSync(logPath, JSON.stringify(s) + '\n'),
    preprocess: { tokenizer: TOKENIZER_FILE },
    extraFiles: { [TOKENIZER_FILE]: new TextEncoder().encode(tok.toHuggingFaceJson()) },
  });
  const prev =
    o.resume && existsSync(join(runDir, 'train_time.json'))
      ? (JSON.parse(readFileSync(join(runDir, 'train_time.json'), 'utf8')) as { seconds: number }).seconds
      : 0;
  writeFileAtomic(join(runDir, 'train_time.json'), JSON.stringify({ seconds: prev + r.seconds }) + '\n');
  say(`trained ${r.steps} steps in ${r.seconds.toFixed(1)} s, final loss ${r.finalLoss.toFixed(4)}`);
  if (o.noEval) return null;
  return writeLmEval(runDir, model, grid, data.test, say);
}

function writeLmEval(
  runDir: string,
  model: Transformer | ReturnType<typeof buildModel>,
  grid: Grid,
  test: ReturnType<typeof bpeTokenSplit>['test'],
  say: (s: string) => void,
  maxWindows?: number,
): LmEvalRow[] {
  const rows = evaluateLm(model, grid.entries, test, maxWindows);
  writeFileAtomic(join(runDir, 'eval.json'), JSON.stringify(rows, null, 2) + '\n');
  say(formatLmRows(rows));
  say(`wrote ${join(runDir, 'eval.json')}`);
  return rows;
}

export function formatLmRows(rows: readonly LmEvalRow[]): string {
  const lines = [
    '| exit | params | GFLOPs per window | loss | perplexity | next-token acc % |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows)
    lines.push(
      `| ${r.id} | ${r.params} | ${(r.flops / 1e9).toFixed(2)} | ${r.loss.toFixed(4)} | ${r.perplexity.toFixed(2)} | ${(100 * r.accuracy).toFixed(1)} |`,
    );
  return lines.join('\n');
}

/** Perplexity per exit of an LM run on its corpus' validation split (same tokenizer as training). */
export async function evalLmRun(
  runDir: string,
  o: { maxWindows?: number; log?: (s: string) => void } = {},
): Promise<LmEvalRow[]> {
  const c = readRunJson(runDir);
  const { model, tokenizer, meta } = await loadLm(runDir);
  const { data } = prepare(c, tokenizer);
  return writeLmEval(
    runDir,
    model,
    new Grid(meta.grid, model),
    data.test,
    o.log ?? console.log,
    o.maxWindows,
  );
}

export interface GenerateFlags {
  run?: string;
  prompt?: string;
  maxTokens?: number;
  exit?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  earlyExit?: { exits: number[]; thresholds: number[] };
  speculative?: boolean;
  draftDepth?: number;
  k?: number;
  stop?: boolean;
}

/** Streams the continuation of --prompt to stdout; speed and decoding statistics go to stderr. */
export async function runGenerate(
  f: GenerateFlags,
  out: (s: string) => void = (s) => process.stdout.write(s),
  err: (s: string) => void = (s) => process.stderr.write(s),
): Promise<number> {
  const runDir = f.run!;
  const { model, tokenizer } = await loadLm(runDir);
  if (f.prompt === undefined || f.prompt === '')
    throw new Error('generate: --prompt is empty; give some text to continue');
  if ((f.draftDepth !== undefined || f.k !== undefined) && !f.speculative)
    throw new Error('generate: --draft-depth and --k need --speculative');
  const prompt = tokenizer.encode(f.prompt);
  const eot = tokenizer.specials.get(END_OF_TEXT);
  const stream = new StreamDecoder(tokenizer);
  out(f.prompt);
  const r = generate(model, prompt, {
    // Without --max-tokens: 100, or what the context has left.
    maxNewTokens: f.maxTokens ?? Math.max(1, Math.min(100, model.config.maxLen - prompt.length)),
    temperature: f.temperature ?? 0,
    topK: f.topK,
    topP: f.topP,
    seed: f.seed,
    exit: f.exit,
    earlyExit: f.earlyExit,
    speculative: f.speculative ? { draftDepth: f.draftDepth ?? 2, k: f.k } : undefined,
    stopTokens: f.stop === false || eot === undefined ? [] : [eot],
    onToken: (t) => out(t === eot ? '' : stream.push(t)),
  });
  out(stream.flush() + '\n');
  const mode = f.speculative
    ? `speculative (draft depth ${f.draftDepth ?? 2}): ${r.accepted}/${r.proposed} draft tokens accepted (${((100 * r.accepted) / Math.max(1, r.proposed)).toFixed(0)}%)`
    : f.earlyExit
      ? `early exit: mean exit depth ${r.meanExitDepth.toFixed(2)} of ${model.config.layers} (${JSON.stringify(r.exitCounts)})`
      : `depth ${f.exit ?? model.config.layers} of ${model.config.layers}`;
  err(
    `${r.tokens.length} tokens in ${(r.decodeMs / 1000).toFixed(2)} s: ${r.tokensPerSecond.toFixed(1)} tokens/s (prompt ${r.promptTokens} tokens, prefill ${r.prefillMs.toFixed(0)} ms; ${(f.temperature ?? 0) === 0 ? 'greedy' : 'sampling'}, ${mode})\n`,
  );
  return 0;
}
