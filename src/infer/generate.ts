/**
 * Decoding with a sorted language model, every mode on a KV cache (prefill once, then one
 * position per step):
 *  - plain: greedy (temperature 0) or sampling (temperature, top-k, top-p, seeded) with the
 *    full model or the sub-model of depth `exit` (its exit goes through the shared head);
 *  - early exit (instance-aware, CALM-style confidence): per token, exits are tried from shallow
 *    to deep and the token leaves at the first whose confidence (top softmax probability, or the
 *    top-1 − top-2 logit margin) is above its threshold;
 *    the layers it skipped are filled lazily and exactly (see kv_cache.ts);
 *  - self-speculative (Draft & Verify, LayerSkip, Sorted LLaMA): the first `draftDepth` layers
 *    draft k tokens on their part of the cache, the full model verifies all k in one pass over
 *    the remaining layers, and rejected positions are rolled back. Greedy: the output is identical
 *    to greedy decoding of the full model. Sampling: rejection sampling (Leviathan et al. 2023)
 *    keeps the output distributed exactly as sampling from the full model.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { z } from 'zod';
import type { Transformer } from '../models/transformer.js';
import type { SubModel } from '../sorted/submodel.js';
import { createRng } from '../data/random.js';
import { KvCache } from './kv_cache.js';
import {
  argmax,
  checkSampling,
  exitConfidence,
  nextTokenProbs,
  sample,
  speculativeAccept,
  topProbability,
  type SamplingOptions,
} from './sampling.js';
import { logProbability, makeProcessor } from './logits_process.js';
import {
  checkGenerateConfig,
  DEFAULT_DRAFT_TOKENS,
  DEFAULT_MAX_NEW_TOKENS,
  effectiveTemperature,
  type EarlyExitSchema,
  type GenerateConfig,
  type SpeculativeSchema,
} from './options.js';

export type EarlyExitOptions = z.infer<typeof EarlyExitSchema>;
export type SpeculativeOptions = z.infer<typeof SpeculativeSchema>;

/**
 * The library's options: the shared schema's (src/infer/options.ts; the CLI and POST /generate
 * take the same) plus callbacks. Greedy unless `doSample` or a temperature > 0 asks to sample.
 */
export interface GenerateOptions extends GenerateConfig {
  /** Called with each token as soon as it is decided (streaming). */
  onToken?: (token: number) => void;
  /** Called after each token with the new tokens so far; true ends generation ('stop-string'). */
  stopWhen?: (tokens: readonly number[]) => boolean;
}

export interface GenerateResult {
  tokens: number[];
  /** Log-probability of each new token (with `logprobs`): log softmax of the processed logits / T. */
  logprobs?: number[];
  stoppedBy: 'length' | 'stop-token' | 'stop-string';
  promptTokens: number;
  /** Prompt processing (every prompt token but the last through the cache). */
  prefillMs: number;
  /** From the call to the first new token (prefill included): the wait a user sees. */
  firstTokenMs: number;
  /** Generating the new tokens. */
  decodeMs: number;
  /** New tokens per second after the first (start-up and prefill excluded). */
  tokensPerSecond: number;
  /** Passes reaching the full depth (verification passes for speculative decoding). */
  fullPasses: number;
  /** Draft passes (speculative). */
  draftPasses: number;
  /** Draft tokens proposed and accepted (speculative). */
  proposed: number;
  accepted: number;
  /** Mean depth at which tokens left (early exit; otherwise the decoding depth). */
  meanExitDepth: number;
  /** Tokens per exit depth. */
  exitCounts: Record<number, number>;
}

const fail = (msg: string): never => {
  throw new Error(`generate: ${msg}`);
};

/** maxNewTokens, or the default capped by the room the context has left. */
export function maxNewTokensFor(model: Transformer, promptLength: number, o: GenerateConfig): number {
  return o.maxNewTokens ?? Math.max(1, Math.min(DEFAULT_MAX_NEW_TOKENS, model.config.maxLen - promptLength));
}

/** The drafting sub-model of speculative options (undefined: none asked for). */
export function draftOf(o: GenerateConfig): SubModel | undefined {
  const s = o.speculative;
  if (!s) return undefined;
  const d: SubModel = { ...(s.draft ?? {}) };
  if (s.draftDepth !== undefined) {
    if (s.draft?.depth !== undefined && s.draft.depth !== s.draftDepth)
      fail(`speculative.draftDepth ${s.draftDepth} and draft.depth ${s.draft.depth} disagree; give one`);
    return { ...d, depth: s.draftDepth };
  }
  return d;
}

/** Checks options against the model; returns the decoding plan. */
export function checkOptions(
  model: Transformer,
  prompt: readonly number[],
  input: GenerateOptions,
): { maxNew: number; temperature: number; draft?: SubModel; sharedDraft: boolean } {
  const { onToken, stopWhen, ...rest } = input;
  void onToken;
  void stopWhen;
  const o = checkGenerateConfig(rest);
  const c = model.config;
  if (c.task !== 'lm') fail('the model must be a language model (task lm)');
  if (prompt.length === 0) fail('the prompt is empty; give at least one token');
  prompt.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= c.vocab)
      fail(`prompt token ${t} at position ${i} is outside the vocabulary 0..${c.vocab - 1}`);
  });
  const maxNew = maxNewTokensFor(model, prompt.length, o);
  if (prompt.length + maxNew > c.maxLen)
    fail(
      `the prompt (${prompt.length} tokens) + maxNewTokens (${maxNew}) exceed the context length ${c.maxLen}; shorten the prompt or ask for fewer tokens`,
    );
  if (o.doSample === true && o.temperature === 0)
    fail('doSample with temperature 0 is greedy; leave out doSample or give a temperature > 0');
  const temperature = effectiveTemperature(o);
  checkSampling({ ...o, temperature }, c.vocab);
  (o.stopTokens ?? []).forEach((t) => {
    if (t >= c.vocab) fail(`stop token ${t} is outside the vocabulary 0..${c.vocab - 1}`);
  });
  if ((o.minNewTokens ?? 0) > maxNew) fail(`minNewTokens ${o.minNewTokens} exceeds maxNewTokens ${maxNew}`);
  if ((o.numReturnSequences ?? 1) > 1)
    fail('numReturnSequences > 1 is for batches: use generateBatch (or generateText)');
  const modes = [o.exit !== undefined, o.earlyExit !== undefined, o.speculative !== undefined].filter(
    Boolean,
  );
  if (modes.length > 1) fail('choose one of exit, earlyExit and speculative');
  const depth = (d: number, what: string) => {
    if (!Number.isInteger(d) || d < 1 || d > c.layers) fail(`${what} ${d} must be a depth in 1..${c.layers}`);
  };
  if (o.exit !== undefined) depth(o.exit, 'exit');
  if (o.earlyExit) {
    const { exits, thresholds } = o.earlyExit;
    exits.forEach((d, i) => {
      depth(d, 'early exit');
      if (d >= c.layers)
        fail(`early exit ${d} must be below the full depth ${c.layers} (the full model is the fallback)`);
      if (i > 0 && d <= exits[i - 1]) fail(`early exits [${exits}] must increase`);
    });
    if (thresholds.length !== exits.length)
      fail(`${exits.length} early exits need ${exits.length} thresholds, got ${thresholds.length}`);
  }
  let draft: SubModel | undefined;
  let sharedDraft = false;
  if (o.speculative) {
    const s = o.speculative;
    draft = draftOf(o)!;
    const widths = Object.keys(draft).some((key) => key !== 'depth');
    if (draft.depth === undefined && !widths)
      fail('speculative needs a draft: draftDepth, or draft with a depth and/or narrower widths');
    if (draft.depth !== undefined) depth(draft.depth, 'draft depth');
    if (!widths && draft.depth! >= c.layers)
      fail(`draft depth ${draft.depth} must be below the full depth ${c.layers}`);
    try {
      model.validate(draft);
    } catch (e) {
      fail(`speculative draft: ${(e as Error).message}`);
    }
    sharedDraft = !widths; // a depth-only draft shares the full model's cache (LayerSkip)
    const k = s.k ?? DEFAULT_DRAFT_TOKENS;
    const maxK = s.maxK ?? Math.max(8, k);
    if (maxK < k) fail(`speculative maxK must be ≥ k (${k}), got ${s.maxK}`);
  }
  return { maxNew, temperature, draft, sharedDraft };
}

/** Logits of hidden states [m, e] through the shared final norm and head: m rows of vocab. */
function logitsOf(model: Transformer, h: tf.Tensor2D): Float32Array[] {
  const t = tf.tidy(() => model.lmLogits(h));
  const flat = t.dataSync() as Float32Array;
  tf.dispose([t, h]);
  const V = model.config.vocab;
  if (flat.length === V) return [flat];
  return Array.from({ length: flat.length / V }, (_, i) => flat.subarray(i * V, (i + 1) * V));
}

/**
 * The decoding loop as a generator: yields each new token, returns the statistics. Runs
 * synchronously between yields; `generate` and `generateStream` drive it.
 */
export function* decodeTokens(
  model: Transformer,
  prompt: readonly number[],
  o: GenerateOptions,
): Generator<number, GenerateResult> {
  const tCall = performance.now();
  const plan = checkOptions(model, prompt, o);
  const { maxNew, temperature } = plan;
  const L = model.config.layers;
  const rng = createRng(o.seed ?? 0);
  const greedy = temperature === 0;
  const sampling: SamplingOptions = { temperature, topK: o.topK, topP: o.topP };
  const stop = new Set(o.stopTokens ?? []);
  const processor = makeProcessor({ ...o, stopTokens: o.stopTokens });
  const seq = [...prompt];
  // Processed logits for the position after `context` (prompt + new tokens + drafted tokens).
  const process = (logits: Float32Array, extra: readonly number[] = []): Float32Array =>
    processor
      ? processor(logits, extra.length ? [...seq, ...extra] : seq, seq.length - prompt.length + extra.length)
      : logits;
  const pick = (logits: Float32Array): number =>
    greedy ? argmax(logits) : sample(nextTokenProbs(logits, sampling), rng);
  const cache = new KvCache(model);
  const draftCache = plan.draft && !plan.sharedDraft ? new KvCache(model, plan.draft) : null;
  const draftDepth = plan.draft?.depth ?? L;
  const r: GenerateResult = {
    tokens: [],
    ...(o.logprobs ? { logprobs: [] } : {}),
    stoppedBy: 'length',
    promptTokens: prompt.length,
    prefillMs: 0,
    firstTokenMs: 0,
    decodeMs: 0,
    tokensPerSecond: 0,
    fullPasses: 0,
    draftPasses: 0,
    proposed: 0,
    accepted: 0,
    meanExitDepth: 0,
    exitCounts: {},
  };
  const plainDepth = o.exit ?? L;
  let depthSum = 0;
  let t0 = performance.now();
  let firstAt = 0;
  try {
    // Prefill: all but the last prompt token through every layer any mode may need.
    if (prompt.length > 1) {
      cache.append(prompt.slice(0, -1));
      cache.advance(o.exit ?? L).dispose();
      if (draftCache) {
        draftCache.append(prompt.slice(0, -1));
        draftCache.advance(draftDepth).dispose();
      }
    }
    cache.append(prompt.slice(-1));
    draftCache?.append(prompt.slice(-1));
    r.prefillMs = performance.now() - t0;
    t0 = performance.now();
    let paused = 0;
    // Emits a token; false when generation is over.
    const emit = function* (token: number, depth: number, logits: Float32Array): Generator<number, boolean> {
      r.tokens.push(token);
      seq.push(token);
      r.logprobs?.push(logProbability(logits, token, temperature));
      r.exitCounts[depth] = (r.exitCounts[depth] ?? 0) + 1;
      depthSum += depth;
      if (r.tokens.length === 1) firstAt = performance.now();
      o.onToken?.(token);
      const p0 = performance.now();
      yield token;
      paused += performance.now() - p0; // time the consumer spent is not decoding time
      if (stop.has(token)) r.stoppedBy = 'stop-token';
      else if (o.stopWhen?.(r.tokens)) r.stoppedBy = 'stop-string';
      return r.stoppedBy === 'length' && r.tokens.length < maxNew;
    };

    if (o.speculative) {
      const s = o.speculative;
      let k = s.k ?? DEFAULT_DRAFT_TOKENS;
      const maxK = s.maxK ?? Math.max(8, k);
      const adaptive = s.adaptive ?? true;
      const threshold = s.confidenceThreshold ?? 0;
      const dc = draftCache ?? cache;
      for (let going = true; going;) {
        const want = Math.min(k, maxNew - r.tokens.length);
        const base = cache.length - 1; // the pending token x
        const draft: number[] = [];
        const q: Float64Array[] = [];
        for (let i = 0; i < want; i++) {
          if (i > 0) dc.append([draft[i - 1]]);
          const logits = process(logitsOf(model, dc.advance(draftDepth))[0], draft);
          r.draftPasses++;
          if (greedy) {
            draft.push(argmax(logits));
            if (threshold > 0 && topProbability(logits) < threshold) break;
          } else {
            const qi = nextTokenProbs(logits, sampling);
            const x = sample(qi, rng);
            draft.push(x);
            q.push(qi);
            if (threshold > 0 && qi[argmax(qi)] < threshold) break;
          }
        }
        const n0 = draft.length;
        // Verify: the full model over x and every drafted token in one pass (a depth-only draft
        // left layers 1..d filled, so only d+1..L run); the last row gives a bonus token when
        // the whole draft is accepted.
        if (draftCache) cache.append(draft);
        else cache.append([draft[n0 - 1]]);
        const full = logitsOf(model, cache.advance(L, n0 + 1));
        r.fullPasses++;
        r.proposed += n0;
        let n = 0;
        let next = -1;
        const verified: Float32Array[] = [];
        for (; n < n0; n++) {
          const pl = process(full[n], draft.slice(0, n));
          verified.push(pl);
          if (greedy) {
            const best = argmax(pl);
            if (best !== draft[n]) {
              next = best;
              break;
            }
          } else {
            const v = speculativeAccept(draft[n], nextTokenProbs(pl, sampling), q[n], rng);
            if (!v.accepted) {
              next = v.token;
              break;
            }
          }
        }
        if (n === n0) {
          const pl = process(full[n0], draft);
          verified.push(pl);
          next = pick(pl);
        }
        r.accepted += n;
        for (let i = 0; i < n && going; i++) going = yield* emit(draft[i], L, verified[i]);
        if (going) going = yield* emit(next, L, verified[n]);
        if (!going) break;
        // Roll back the rejected positions; the last emitted token becomes the pending one.
        cache.truncate(base + n + 1);
        cache.append([next]);
        if (draftCache) {
          draftCache.truncate(base + n + 1);
          draftCache.append(cache.tokens.slice(draftCache.length));
        }
        if (adaptive) k = n === n0 && n0 === want ? Math.min(maxK, k + 1) : n === n0 ? k : Math.max(1, k - 1);
      }
    } else if (o.earlyExit) {
      const { exits, thresholds, measure = 'probability' } = o.earlyExit;
      for (let going = true; going;) {
        let token = -1;
        let depth = L;
        let used: Float32Array | null = null;
        for (const [j, e] of exits.entries()) {
          const logits = process(logitsOf(model, cache.advance(e))[0]);
          if (exitConfidence(measure, logits) > thresholds[j]) {
            token = pick(logits);
            depth = e;
            used = logits;
            break;
          }
        }
        if (token < 0) {
          used = process(logitsOf(model, cache.advance(L))[0]);
          token = pick(used);
          r.fullPasses++;
        }
        going = yield* emit(token, depth, used!);
        if (going) cache.append([token]);
      }
    } else {
      for (let going = true; going;) {
        const logits = process(logitsOf(model, cache.advance(plainDepth))[0]);
        const token = pick(logits);
        if (plainDepth === L) r.fullPasses++;
        going = yield* emit(token, plainDepth, logits);
        if (going) cache.append([token]);
      }
    }
    r.decodeMs = performance.now() - t0 - paused;
  } finally {
    cache.dispose();
    draftCache?.dispose();
  }
  r.firstTokenMs = firstAt - tCall;
  const afterFirst = r.decodeMs - (firstAt - t0);
  r.tokensPerSecond =
    r.tokens.length > 1 && afterFirst > 0
      ? (1000 * (r.tokens.length - 1)) / afterFirst
      : (1000 * r.tokens.length) / r.decodeMs;
  r.meanExitDepth = depthSum / r.tokens.length;
  return r;
}

/** Decodes to the end; `onToken` streams the tokens as they come. */
export function generate(model: Transformer, prompt: readonly number[], o: GenerateOptions): GenerateResult {
  const it = decodeTokens(model, prompt, o);
  for (;;) {
    const s = it.next();
    if (s.done) return s.value;
  }
}

/**
 * The same as an async iterator that gives the event loop a turn after every token (a server
 * can stream to several clients and notice a client that went away: `return()` stops decoding).
 */
export async function* generateStream(
  model: Transformer,
  prompt: readonly number[],
  o: GenerateOptions,
): AsyncGenerator<number, GenerateResult> {
  const it = decodeTokens(model, prompt, o);
  try {
    for (;;) {
      const s = it.next();
      if (s.done) return s.value;
      yield s.value;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    it.return(undefined as never);
  }
}
