/**
 * The options of `generate`, one zod schema for every entry point: the library checks its
 * options with it, the server checks the body of POST /generate with it (plus the prompt and
 * `stream`), and the CLI builds the same object from its flags. Names and defaults follow
 * Hugging Face `generate` in camelCase: greedy unless `doSample` or a temperature > 0 asks to
 * sample, `maxNewTokens` 100 (or what the context has room for), stop at the end-of-text token.
 */
import { z } from 'zod';

/** New tokens when `maxNewTokens` is not given (capped by the room left in the context). */
export const DEFAULT_MAX_NEW_TOKENS = 100;
/** Default draft tokens per speculative round. */
export const DEFAULT_DRAFT_TOKENS = 4;

const depth = z.number().int().min(1);
const fraction = z.number().gt(0).max(1);

/** A sub-model that drafts: a depth and/or narrower widths (MatFormer-style), as in `SubModel`. */
export const DraftSchema = z
  .object({
    depth: depth.optional(),
    heads: z.number().int().min(1).optional(),
    ffn: fraction.optional(),
    embed: fraction.optional(),
    layers: z.record(z.number().int().min(1)).optional(),
  })
  .strict();

export const SpeculativeSchema = z
  .object({
    /** Depth of the drafting sub-model (shorthand for `draft: { depth }`). */
    draftDepth: depth.optional(),
    /** The drafting sub-model: a depth, narrower heads / FFN / embedding, or both. */
    draft: DraftSchema.optional(),
    /** Draft tokens per round (default 4); adapts between 1 and maxK unless adaptive is false. */
    k: z.number().int().min(1).max(32).optional(),
    maxK: z.number().int().min(1).max(32).optional(),
    adaptive: z.boolean().optional(),
    /**
     * End a draft early when the draft's top probability falls below this (Hugging Face
     * `assistant_confidence_threshold`); the unsure token is still proposed.
     */
    confidenceThreshold: z.number().min(0).max(1).optional(),
  })
  .strict();

export const EarlyExitSchema = z
  .object({
    /** Exit depths below the full depth, increasing (e.g. [2, 4]); the full model is the fallback. */
    exits: z.array(depth).min(1).max(64),
    /** A token leaves at an exit whose confidence is above its threshold (same length as exits). */
    thresholds: z.array(z.number().min(0)).max(64),
    /**
     * The confidence: 'probability' (top softmax probability, the default; 1 never leaves) or
     * 'margin' (top-1 − top-2 logit gap; `sortednet calibrate-exit` picks its thresholds).
     */
    measure: z.enum(['probability', 'margin']).optional(),
  })
  .strict();

export const GenerateOptionsSchema = z
  .object({
    maxNewTokens: z.number().int().min(1).optional(),
    /** The stop tokens are forbidden until this many new tokens (HF `min_new_tokens`). */
    minNewTokens: z.number().int().min(0).optional(),
    /** Sample (true) or take the argmax (false, the default). A temperature > 0 also samples. */
    doSample: z.boolean().optional(),
    /** Sampling temperature (default 1 when sampling); 0 = greedy. */
    temperature: z.number().min(0).max(100).optional(),
    topK: z.number().int().min(0).optional(),
    topP: fraction.optional(),
    seed: z.number().int().min(0).max(4294967295).optional(),
    /** HF `repetition_penalty`: seen tokens' positive logits are divided by it, negative ones multiplied. */
    repetitionPenalty: z.number().positive().max(100).optional(),
    /** HF `no_repeat_ngram_size`: no n-gram of this size occurs twice (prompt included). */
    noRepeatNgramSize: z.number().int().min(0).optional(),
    /** Token ids that end a sequence (emitted, then stop). */
    stopTokens: z.array(z.number().int().min(0)).max(64).optional(),
    /** Texts that end a sequence; the text is cut just before the first one (needs a tokenizer). */
    stopStrings: z.array(z.string().min(1).max(256)).max(16).optional(),
    /** Stop at the tokenizer's <|endoftext|> (default true; needs a tokenizer). */
    stopAtEndOfText: z.boolean().optional(),
    /** Sequences per prompt (sampling), decoded together in one batch. */
    numReturnSequences: z.number().int().min(1).max(64).optional(),
    /** Return each new token's log-probability (HF `output_scores`). */
    logprobs: z.boolean().optional(),
    /** Decode with the sub-model of this depth (default: the full model). */
    exit: depth.optional(),
    earlyExit: EarlyExitSchema.optional(),
    speculative: SpeculativeSchema.optional(),
  })
  .strict();

export type GenerateConfig = z.infer<typeof GenerateOptionsSchema>;

/** Zod's issues as `field: what is wrong, got value` (unknown fields named); `input` is the checked value. */
export function describeOptionIssues(e: z.ZodError, input?: unknown): string {
  const valueAt = (path: (string | number)[]) =>
    path.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], input);
  return e.issues
    .map((i) => {
      const at = i.path.length ? i.path.join('.') : 'options';
      if (i.code === 'unrecognized_keys')
        return `${at}: unknown field ${i.keys.map((k) => `'${k}'`).join(', ')}`;
      if (i.code === 'invalid_type')
        return `${at}: expected ${i.expected}, got ${i.received === 'undefined' ? 'nothing' : i.received}`;
      const got = input === undefined ? '' : `, got ${JSON.stringify(valueAt(i.path))}`;
      return `${at}: ${i.message.replace(/^(Number|String|Array) must (contain|be) /, 'must $2 ')}${got}`;
    })
    .join('; ');
}

/** Checks options against the schema; throws `generate: field: problem` naming every problem. */
export function checkGenerateConfig(o: unknown): GenerateConfig {
  const r = GenerateOptionsSchema.safeParse(o);
  if (!r.success) throw new Error(`generate: ${describeOptionIssues(r.error, o)}`);
  return r.data;
}

/** Is this a sampling request (HF: do_sample, or here also a temperature above 0)? */
export function isSampling(o: Pick<GenerateConfig, 'doSample' | 'temperature'>): boolean {
  return o.doSample === false ? false : o.doSample === true || (o.temperature ?? 0) > 0;
}

/** The temperature actually used: 0 (greedy) unless sampling, then the given one or 1. */
export function effectiveTemperature(o: Pick<GenerateConfig, 'doSample' | 'temperature'>): number {
  if (!isSampling(o)) return 0;
  return o.temperature && o.temperature > 0 ? o.temperature : 1;
}
