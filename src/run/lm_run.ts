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
import { buildModel, Transformer, type ModelSpec } from '../models/index.js';
import { Grid, type GridSpec } from '../sorted/grid.js';
import { loadTextCorpus } from '../data/text.js';
import { bpeTokenSplit } from '../data/tokens.js';
import { trainBpe } from '../tokenizer/train_bpe.js';
import { BpeTokenizer } from '../tokenizer/bpe.js';
import { draftOf } from '../infer/generate.js';
import { generateText } from '../infer/generate_text.js';
import { checkGenerateConfig, isSampling, type GenerateConfig } from '../infer/options.js';
import type { SubModel } from '../sorted/submodel.js';
import { trainRun } from './train_run.js';
import { resolveTrainConfig } from '../train/config.js';
import { evaluateLm, type LmEvalRow } from '../train/evaluate_lm.js';
import { getPreset } from './presets.js';
import type { RunConfig } from './run_config.js';
import { engineDescription, initEngine } from '../engine/backend.js';

/** An LM run's run.json: a preset name, a corpus (sotu, moby-dick, text:PATH) and training fields. */
export type LmRunConfig = Pick<RunConfig, 'model' | 'data' | 'train' | 'backend' | 'grid' | 'initFrom'>;

/** Is this preset a language model (its runs go through this file)? */
export function isLmPreset(model: unknown): boolean {
  return typeof model === 'string' && getPreset(model).lm !== undefined;
}

/** Is this run config's model a language model: an LM preset, or a decoder spec (an imported LM)? */
export function isLmRun(model: unknown): boolean {
  if (isLmPreset(model)) return true;
  const m = model as { family?: unknown; config?: { task?: unknown } } | null;
  return typeof m === 'object' && m !== null && m.family === 'transformer' && m.config?.task === 'lm';
}

/** Training defaults of an LM run whose model is a spec (an imported LM), not a preset. */
const SPEC_LM_TRAIN = { steps: 100, batchSize: 8, gAcc: 2, warmupSteps: 10 } as const;
/** Windows an imported LM trains on when its checkpoint records none (short: CPU training). */
const SPEC_LM_WINDOW = 128;

/** Window and training defaults of an LM run: its preset's, or for a spec its checkpoint's window. */
function lmSettings(c: Pick<RunConfig, 'model'>, trainedContext?: number) {
  if (typeof c.model === 'string') {
    const p = lmPreset(c.model);
    return { seqLen: p.lm.seqLen, vocabSize: p.lm.vocabSize, train: p.lm.train };
  }
  const maxLen = (c.model as { config?: { maxLen?: number } }).config?.maxLen ?? SPEC_LM_WINDOW;
  return {
    seqLen: trainedContext ?? Math.min(maxLen, SPEC_LM_WINDOW),
    vocabSize: undefined,
    train: SPEC_LM_TRAIN,
  };
}

function lmPreset(name: RunConfig['model']) {
  if (typeof name !== 'string')
    throw new Error('an LM run needs a model preset name (lm-tiny, lm-small, lm-gpt-tiny, lm-gpt-small)');
  const p = getPreset(name);
  if (!p.lm)
    throw new Error(
      `preset '${name}' is not a language model; LM presets: lm-tiny, lm-small (LLaMA-style), lm-gpt-tiny, lm-gpt-small (GPT-style, ONNX-exportable)`,
    );
  return { ...p, lm: p.lm };
}

function prepare(c: LmRunConfig, tokenizer?: BpeTokenizer, trainedContext?: number) {
  const { seqLen, vocabSize } = lmSettings(c, trainedContext);
  const corpus = loadTextCorpus(c.data.name);
  if (!tokenizer && vocabSize === undefined)
    throw new Error(`${JSON.stringify(c.data.name)}: an LM run of an imported model needs its tokenizer`);
  const tok = tokenizer ?? trainBpe(corpus.train, { vocabSize: vocabSize! });
  const data = bpeTokenSplit(corpus, tok, seqLen);
  return { tok, data, seqLen };
}

export async function trainLmRun(
  runDir: string,
  c: LmRunConfig,
  o: { resume?: boolean; noEval?: boolean; log?: (s: string) => void; initFrom?: string } = {},
): Promise<LmEvalRow[] | null> {
  const say = o.log ?? console.log;
  await initEngine(c.backend ?? 'wasm');
  say(engineDescription());
  let tokenizer: BpeTokenizer | undefined;
  let trainedContext: number | undefined;
  let spec: ModelSpec | undefined;
  let sourceGrid: GridSpec | undefined;
  // A run killed before its first save has no tokenizer yet: it starts again.
  if (o.resume && hasCheckpoint(runDir)) {
    const own = await loadLm(runDir);
    ({ tokenizer, trainedContext } = own);
    own.model.dispose();
  } else if (o.initFrom !== undefined) {
    // SoFT: the source's model, tokenizer and window; its exits are trained through the shared head.
    const source = await loadLm(o.initFrom);
    ({ tokenizer, trainedContext } = source);
    spec = source.meta.model;
    sourceGrid = source.meta.grid;
    source.model.dispose();
  }
  const settings = lmSettings(c, trainedContext);
  const tc = resolveTrainConfig({ ...settings.train, ...c.train });
  const t0 = performance.now();
  const { tok, data, seqLen } = prepare(c, tokenizer, trainedContext);
  if (!tokenizer)
    say(
      `trained a byte-level BPE tokenizer: ${tok.vocabSize} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  spec ??=
    typeof c.model === 'string'
      ? lmPreset(c.model).model({ channels: 1, size: seqLen, classes: tok.vocabSize })
      : (c.model as ModelSpec);
  const model = buildModel(spec, tc.seed);
  const declared = (model.config as { maxLen?: number }).maxLen;
  if (declared !== undefined && seqLen > declared)
    throw new Error(
      `${typeof c.model === 'string' ? c.model : 'the model'}: training windows of ${seqLen} tokens exceed the context ${declared}`,
    );
  const gridSpec = c.grid ?? sourceGrid ?? (typeof c.model === 'string' ? lmPreset(c.model).grid : undefined);
  if (!gridSpec) throw new Error('an LM run of a model spec needs a grid (run.json "grid")');
  const grid = new Grid(gridSpec, model);
  mkdirSync(runDir, { recursive: true });
  writeRunConfig(runDir, JSON.stringify(c, null, 2) + '\n');
  say(
    `run ${runDir}: ${typeof c.model === 'string' ? c.model : `${spec.family} (${(model as Transformer).config.layers} layers)`} ${tc.strategy} on ${c.data.name}: ${data.train.tokens.length} train / ${data.test.tokens.length} validation tokens, windows of ${seqLen}`,
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
    preprocess: { tokenizer: TOKENIZER_FILE, trainedContext: seqLen },
    extraFiles: { [TOKENIZER_FILE]: new TextEncoder().encode(tok.toHuggingFaceJson()) },
    initFrom: o.initFrom,
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
  const { model, tokenizer, meta, trainedContext } = await loadLm(runDir);
  const { data } = prepare(c, tokenizer, trainedContext);
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
  /** One prompt, or several decoded as one batch. */
  prompt?: string | string[];
  maxTokens?: number;
  minTokens?: number;
  exit?: number;
  sample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  repetitionPenalty?: number;
  noRepeatNgram?: number;
  stopString?: string[];
  numSequences?: number;
  logprobs?: boolean;
  earlyExit?: { exits: number[]; thresholds: number[] };
  exitMeasure?: 'probability' | 'margin';
  speculative?: boolean;
  draftDepth?: number;
  draft?: SubModel;
  k?: number;
  confidence?: number;
  stop?: boolean;
}

/** The flags as the options every entry point shares (checked by the same schema as the library's). */
export function generateConfigOf(f: GenerateFlags): GenerateConfig {
  if (
    (f.draftDepth !== undefined ||
      f.draft !== undefined ||
      f.k !== undefined ||
      f.confidence !== undefined) &&
    !f.speculative
  )
    throw new Error('generate: --draft-depth, --draft, --k and --confidence need --speculative');
  if (f.exitMeasure !== undefined && !f.earlyExit)
    throw new Error('generate: --exit-measure needs --early-exit DEPTH:THRESHOLD,…');
  const draft = f.draft ?? (f.draftDepth === undefined ? { depth: 2 } : undefined);
  return checkGenerateConfig({
    maxNewTokens: f.maxTokens,
    minNewTokens: f.minTokens,
    doSample: f.sample,
    temperature: f.temperature,
    topK: f.topK,
    topP: f.topP,
    seed: f.seed,
    repetitionPenalty: f.repetitionPenalty,
    noRepeatNgramSize: f.noRepeatNgram,
    stopStrings: f.stopString,
    stopAtEndOfText: f.stop,
    numReturnSequences: f.numSequences,
    logprobs: f.logprobs,
    exit: f.exit,
    earlyExit: f.earlyExit && { ...f.earlyExit, ...(f.exitMeasure ? { measure: f.exitMeasure } : {}) },
    speculative: f.speculative
      ? {
          ...(f.draftDepth !== undefined ? { draftDepth: f.draftDepth } : {}),
          ...(draft ? { draft: { ...draft, layers: draft.layers ? { ...draft.layers } : undefined } } : {}),
          k: f.k,
          confidenceThreshold: f.confidence,
        }
      : undefined,
  });
}

/** The window an LM run was trained on: recorded in its checkpoint, or its preset's for older runs. */
export function trainedContextOf(runDir: string, recorded?: number): number | undefined {
  if (recorded !== undefined) return recorded;
  try {
    const model = readRunJson(runDir).model;
    return isLmPreset(model)
      ? lmPreset(model).lm.seqLen
      : isLmRun(model)
        ? lmSettings({ model }).seqLen
        : undefined;
  } catch {
    return undefined;
  }
}

/** Streams the continuation of each --prompt to stdout; speed and decoding statistics go to stderr. */
export async function runGenerate(
  f: GenerateFlags,
  out: (s: string) => void = (s) => process.stdout.write(s),
  err: (s: string) => void = (s) => process.stderr.write(s),
): Promise<number> {
  const runDir = f.run!;
  const prompts = typeof f.prompt === 'string' ? [f.prompt] : (f.prompt ?? []);
  // Everything that can be wrong with the request is found before anything is printed.
  if (prompts.length === 0 || prompts.some((p) => p === ''))
    throw new Error('generate: --prompt is empty; give some text to continue');
  const config = generateConfigOf(f);
  const lm = await loadLm(runDir);
  const trainedContext = trainedContextOf(runDir, lm.trainedContext);
  const { model } = lm;
  const one = prompts.length === 1 && (config.numReturnSequences ?? 1) === 1;
  const tStart = performance.now();
  // One sequence streams as it is decoded; several print one after the other at the end.
  // The prompt is printed with the first piece of text, once decoding has accepted the request.
  let shown = false;
  const show = () => {
    if (!shown) out(prompts[0]);
    shown = true;
  };
  const r = generateText({ ...lm, trainedContext }, prompts, {
    ...config,
    onText: one
      ? (_row, piece) => {
          show();
          out(piece);
        }
      : undefined,
  });
  for (const w of r.warnings) err(`warning: ${w}\n`);
  if (one) {
    show();
    out('\n');
  } else
    for (const [i, s] of r.sequences.entries())
      out(
        `${i > 0 ? '\n' : ''}--- prompt ${s.prompt + 1}${(config.numReturnSequences ?? 1) > 1 ? `, sequence ${(i % (config.numReturnSequences ?? 1)) + 1}` : ''}\n${prompts[s.prompt]}${s.text}\n`,
      );
  if (config.logprobs)
    for (const s of r.sequences)
      err(`logprobs (prompt ${s.prompt + 1}): ${s.logprobs!.map((x) => x.toFixed(3)).join(' ')}\n`);
  const newTokens = r.sequences.reduce((n, s) => n + s.tokens.length, 0);
  const sampling = isSampling(config);
  const stats = r.stats;
  const mode = config.speculative
    ? `speculative (draft ${JSON.stringify(draftOf(config))}): ${stats!.accepted}/${stats!.proposed} draft tokens accepted (${((100 * stats!.accepted) / Math.max(1, stats!.proposed)).toFixed(0)}%)`
    : config.earlyExit
      ? `early exit: mean exit depth ${stats!.meanExitDepth.toFixed(2)} of ${model.config.layers} (${JSON.stringify(stats!.exitCounts)})`
      : `depth ${config.exit ?? model.config.layers} of ${model.config.layers}${one ? '' : `, batch of ${r.sequences.length}`}`;
  err(
    `${newTokens} tokens: ${r.tokensPerSecond.toFixed(1)} tokens/s decoding${one ? ` after the first token; first token after ${r.firstTokenMs!.toFixed(0)} ms` : ''} (prompt ${r.promptTokens.join(', ')} tokens, prefill ${r.prefillMs.toFixed(0)} ms, ${((performance.now() - tStart) / 1000).toFixed(2)} s in all; ${sampling ? 'sampling' : 'greedy'}, ${mode})\n`,
  );
  return 0;
}
