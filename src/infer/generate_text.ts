/**
 * Text in, text out, as `pipeline('text-generation')` of transformers.js or HF `generate` plus
 * `decode`: one prompt or several (decoded as one batch), `numReturnSequences` per prompt, stop
 * strings cut exactly, `<|endoftext|>` ending a sequence by default. The CLI and POST /generate
 * are built on these pieces, so all three take the same options (src/infer/options.ts).
 */
import type { Transformer } from '../models/transformer.js';
import { END_OF_TEXT, StreamDecoder, type BpeTokenizer } from '../tokenizer/bpe.js';
import { generateBatch } from './batch.js';
import { decodeTokens, maxNewTokensFor, type GenerateOptions, type GenerateResult } from './generate.js';
import { checkGenerateConfig, type GenerateConfig } from './options.js';

/**
 * Turns a sequence's tokens into text as they come, holding back any tail that could still
 * become a stop string, so that what was handed out never has to be taken back and the text
 * ends exactly before the first stop string. The end-of-text token adds no text.
 */
export class TextStreamer {
  private readonly decoder: StreamDecoder;
  private full = '';
  private given = 0;
  /** Where the text is cut (the first stop string), once one appeared. */
  private cut = -1;

  constructor(
    tokenizer: BpeTokenizer,
    private readonly stopStrings: readonly string[] = [],
    private readonly silent: ReadonlySet<number> = new Set(),
  ) {
    this.decoder = new StreamDecoder(tokenizer);
  }

  get stopped(): boolean {
    return this.cut >= 0;
  }

  /** The text so far (cut before the stop string once one appeared). */
  get text(): string {
    return this.cut >= 0 ? this.full.slice(0, this.cut) : this.full;
  }

  /** Adds a token; returns the text that is now certain. */
  push(token: number): string {
    if (this.cut >= 0) return '';
    if (!this.silent.has(token)) this.full += this.decoder.push(token);
    this.findStop();
    return this.take(this.cut >= 0 ? this.cut : this.full.length - this.heldBack());
  }

  /** The rest of the text at the end of generation. */
  flush(): string {
    if (this.cut < 0) {
      this.full += this.decoder.flush();
      this.findStop();
    }
    return this.take(this.cut >= 0 ? this.cut : this.full.length);
  }

  private findStop(): void {
    for (const s of this.stopStrings) {
      const i = this.full.indexOf(s, Math.max(0, this.given - s.length));
      if (i >= 0 && (this.cut < 0 || i < this.cut)) this.cut = i;
    }
  }

  /** Length of the longest tail of the text that begins some stop string. */
  private heldBack(): number {
    let hold = 0;
    for (const s of this.stopStrings)
      for (let n = Math.min(s.length - 1, this.full.length); n > hold; n--)
        if (this.full.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
    return hold;
  }

  private take(upTo: number): string {
    const piece = this.full.slice(this.given, Math.max(this.given, upTo));
    this.given = Math.max(this.given, upTo);
    return piece;
  }
}

/** A loaded LM as `loadLm` gives it; `trainedContext` is the window it was trained on, when known. */
export interface TextLm {
  model: Transformer;
  tokenizer: BpeTokenizer;
  trainedContext?: number;
}

export interface TextGenerateOptions extends GenerateConfig {
  /** Streams text as it becomes certain: (sequence index, piece). */
  onText?: (sequence: number, piece: string) => void;
}

export interface TextSequence {
  prompt: number;
  text: string;
  tokens: number[];
  logprobs?: number[];
  stoppedBy: 'length' | 'stop-token' | 'stop-string';
}

export interface TextResult {
  sequences: TextSequence[];
  /** Prompt tokens per prompt. */
  promptTokens: number[];
  /** Things the user should know (e.g. running past the window the model was trained on). */
  warnings: string[];
  prefillMs: number;
  /** From the call to the first new token (one-sequence decoding). */
  firstTokenMs?: number;
  decodeMs: number;
  /** New tokens per second of decoding (after the first token for one sequence). */
  tokensPerSecond: number;
  /** The single-sequence statistics (acceptance, exit depths), when one sequence was decoded. */
  stats?: GenerateResult;
}

/** The stop tokens a request means: its own, plus <|endoftext|> unless `stopAtEndOfText` is false. */
export function stopTokensFor(tokenizer: BpeTokenizer | undefined, o: GenerateConfig): number[] {
  const eot = tokenizer?.specials.get(END_OF_TEXT);
  const own = o.stopTokens ?? [];
  return o.stopAtEndOfText === false || eot === undefined || own.includes(eot) ? own : [...own, eot];
}

/** A warning when a request runs past the window the model was trained on (null when it does not). */
export function contextWarning(promptLength: number, maxNew: number, trainedContext?: number): string | null {
  if (trainedContext === undefined || promptLength + maxNew <= trainedContext) return null;
  const where =
    promptLength > trainedContext
      ? `the prompt (${promptLength} tokens) is longer than`
      : `the prompt (${promptLength} tokens) + up to ${maxNew} new tokens run past`;
  return `${where} the ${trainedContext}-token window the model was trained on; text beyond it is less reliable (perplexity rises)`;
}

/** Continues one prompt or several; every option of `generate` applies (batches: plain decoding). */
export function generateText(
  lm: TextLm,
  prompt: string | readonly string[],
  o: TextGenerateOptions = {},
): TextResult {
  const { onText, ...config } = o;
  const checked = checkGenerateConfig(config);
  const { model, tokenizer } = lm;
  const prompts = typeof prompt === 'string' ? [prompt] : [...prompt];
  if (prompts.length === 0) throw new Error('generate: no prompts; give at least one');
  prompts.forEach((p, i) => {
    if (p === '') throw new Error(`generate: prompt ${i} is empty; give some text to continue`);
  });
  const ids = prompts.map((p) => tokenizer.encode(p));
  const stopTokens = stopTokensFor(tokenizer, checked);
  const silent = new Set(tokenizer.specials.values());
  const stopStrings = checked.stopStrings ?? [];
  const warnings = [
    ...new Set(
      ids
        .map((p) => contextWarning(p.length, maxNewTokensFor(model, p.length, checked), lm.trainedContext))
        .filter((w): w is string => w !== null),
    ),
  ];
  const n = checked.numReturnSequences ?? 1;
  const streamers: TextStreamer[] = [];
  const streamer = (row: number) => (streamers[row] ??= new TextStreamer(tokenizer, stopStrings, silent));
  const options = { ...checked, stopTokens, stopStrings: undefined };
  if (ids.length === 1 && n === 1) {
    const s = streamer(0);
    const it = decodeTokens(model, ids[0], {
      ...options,
      numReturnSequences: undefined,
      stopWhen: () => s.stopped,
      onToken: (t) => {
        const piece = s.push(t);
        if (piece) onText?.(0, piece);
      },
    } as GenerateOptions);
    let step = it.next();
    while (!step.done) step = it.next();
    const r = step.value;
    const last = s.flush();
    if (last) onText?.(0, last);
    return {
      sequences: [
        {
          prompt: 0,
          text: s.text,
          tokens: r.tokens,
          ...(r.logprobs ? { logprobs: r.logprobs } : {}),
          stoppedBy: r.stoppedBy,
        },
      ],
      promptTokens: [ids[0].length],
      warnings,
      prefillMs: r.prefillMs,
      firstTokenMs: r.firstTokenMs,
      decodeMs: r.decodeMs,
      tokensPerSecond: r.tokensPerSecond,
      stats: r,
    };
  }
  const r = generateBatch(model, ids, {
    ...options,
    stopWhen: (row) => streamer(row).stopped,
    onToken: (row, t) => {
      const piece = streamer(row).push(t);
      if (piece) onText?.(row, piece);
    },
  });
  return {
    sequences: r.sequences.map((q, row) => {
      const last = streamer(row).flush();
      if (last) onText?.(row, last);
      return { ...q, text: streamer(row).text };
    }),
    promptTokens: ids.map((p) => p.length),
    warnings,
    prefillMs: r.prefillMs,
    decodeMs: r.decodeMs,
    tokensPerSecond: r.tokensPerSecond,
  };
}
