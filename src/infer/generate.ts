/**
 * Decoding with a sorted language model, every mode on a KV cache (prefill once, then one
 * position per step):
 *  - plain: greedy (temperature 0) or sampling (temperature, top-k, top-p, seeded) with the
 *    full model or the sub-model of depth `exit` (its exit goes through the shared head);
 *  - early exit (instance-aware, CALM-style confidence): per token, exits are tried from shallow
 *    to deep and the token leaves at the first whose max softmax probability reaches its threshold;
 *    the layers it skipped are filled lazily and exactly (see kv_cache.ts);
 *  - self-speculative (Draft & Verify, LayerSkip, Sorted LLaMA): the first `draftDepth` layers
 *    draft k tokens on their part of the cache, the full model verifies all k in one pass over
 *    the remaining layers, and rejected positions are rolled back. Greedy: the output is identical
 *    to greedy decoding of the full model. Sampling: rejection sampling (Leviathan et al. 2023)
 *    keeps the output distributed exactly as sampling from the full model.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Transformer } from '../models/transformer.js';
import { createRng, type Rng } from '../data/random.js';
import { KvCache } from './kv_cache.js';
import {
  argmax,
  checkSampling,
  nextTokenProbs,
  sample,
  softmax,
  speculativeAccept,
  type SamplingOptions,
} from './sampling.js';

export interface EarlyExitOptions {
  /** Exit depths below the full depth, increasing (e.g. [2, 4]); the full model is the fallback. */
  exits: number[];
  /** Minimum max-probability to leave at each exit (same length as exits). */
  thresholds: number[];
}

export interface SpeculativeOptions {
  /** Depth of the drafting sub-model (its first layers are the full model's). */
  draftDepth: number;
  /** Draft tokens per round (default 4); adapts between 1 and maxK unless adaptive is false. */
  k?: number;
  maxK?: number;
  adaptive?: boolean;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Seeds sampling (default 0); greedy needs none. */
  seed?: number;
  /** Decode with the sub-model of this depth (default: the full model). */
  exit?: number;
  earlyExit?: EarlyExitOptions;
  speculative?: SpeculativeOptions;
  /** Generation ends after emitting one of these (e.g. <|endoftext|>). */
  stopTokens?: readonly number[];
  /** Called with each token as soon as it is decided (streaming). */
  onToken?: (token: number) => void;
}

export interface GenerateResult {
  tokens: number[];
  stoppedBy: 'length' | 'stop-token';
  promptTokens: number;
  /** Prompt processing (every prompt token but the last through the cache). */
  prefillMs: number;
  /** Generating the new tokens. */
  decodeMs: number;
  /** New tokens per second of decoding. */
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

function checkOptions(model: Transformer, prompt: readonly number[], o: GenerateOptions): void {
  const c = model.config;
  if (c.task !== 'lm') fail('the model must be a language model (task lm)');
  if (prompt.length === 0) fail('the prompt is empty; give at least one token');
  prompt.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= c.vocab)
      fail(`prompt token ${t} at position ${i} is outside the vocabulary 0..${c.vocab - 1}`);
  });
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1)
    fail(`maxNewTokens must be a positive integer, got ${o.maxNewTokens}`);
  if (prompt.length + o.maxNewTokens > c.maxLen)
    fail(
      `the prompt (${prompt.length} tokens) + maxNewTokens (${o.maxNewTokens}) exceed the context length ${c.maxLen}; shorten the prompt or ask for fewer tokens`,
    );
  checkSampling(o, c.vocab);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) fail(`seed must be an integer, got ${o.seed}`);
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
    if (exits.length === 0) fail('earlyExit needs at least one exit below the full depth');
    exits.forEach((d, i) => {
      depth(d, 'early exit');
      if (d >= c.layers)
        fail(`early exit ${d} must be below the full depth ${c.layers} (the full model is the fallback)`);
      if (i > 0 && d <= exits[i - 1]) fail(`early exits [${exits}] must increase`);
    });
    if (thresholds.length !== exits.length)
      fail(`${exits.length} early exits need ${exits.length} thresholds, got ${thresholds.length}`);
    thresholds.forEach((t) => {
      if (!(Number.isFinite(t) && t >= 0))
        fail(`threshold ${t} must be a number ≥ 0 (0: always exit; above 1: never)`);
    });
  }
  if (o.speculative) {
    const s = o.speculative;
    depth(s.draftDepth, 'draft depth');
    if (s.draftDepth >= c.layers)
      fail(`draft depth ${s.draftDepth} must be below the full depth ${c.layers}`);
    const k = s.k ?? 4;
    const maxK = s.maxK ?? Math.max(8, k);
    if (!Number.isInteger(k) || k < 1) fail(`speculative k must be a positive integer, got ${s.k}`);
    if (!Number.isInteger(maxK) || maxK < k)
      fail(`speculative maxK must be an integer ≥ k (${k}), got ${s.maxK}`);
  }
}

/** Logits of hidden states [m, e] through the shared final norm and head: m rows of vocab. */
function logitsOf(model: Transformer, h: tf.Tensor2D): Float32Array[] {
  const t = tf.tidy(() => model.lmLogits(h));
  const flat = t.dataSync() as Float32Array;
  tf.dispose([t, h]);
  const V = model.config.vocab;
  return Array.from({ length: flat.length / V }, (_, i) => flat.subarray(i * V, (i + 1) * V));
}

function pick(logits: Float32Array, o: GenerateOptions, rng: Rng): number {
  return (o.temperature ?? 1) === 0 ? argmax(logits) : sample(nextTokenProbs(logits, o), rng);
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
  checkOptions(model, prompt, o);
  const L = model.config.layers;
  const rng = createRng(o.seed ?? 0);
  const greedy = (o.temperature ?? 1) === 0;
  const stop = new Set(o.stopTokens ?? []);
  const cache = new KvCache(model);
  const r: GenerateResult = {
    tokens: [],
    stoppedBy: 'length',
    promptTokens: prompt.length,
    prefillMs: 0,
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
  try {
    // Prefill: all but the last prompt token through every layer any mode may need.
    if (prompt.length > 1) {
      cache.append(prompt.slice(0, -1));
      cache.advance(o.exit ?? L).dispose();
    }
    cache.append(prompt.slice(-1));
    r.prefillMs = performance.now() - t0;
    t0 = performance.now();
    let paused = 0;
    // Emits a token; false when generation is over.
    const emit = function* (token: number, depth: number): Generator<number, boolean> {
      r.tokens.push(token);
      r.exitCounts[depth] = (r.exitCounts[depth] ?? 0) + 1;
      depthSum += depth;
      o.onToken?.(token);
      const p0 = performance.now();
      yield token;
      paused += performance.now() - p0; // time the consumer spent is not decoding time
      if (stop.has(token)) r.stoppedBy = 'stop-token';
      return !stop.has(token) && r.tokens.length < o.maxNewTokens;
    };

    if (o.speculative) {
      const d = o.speculative.draftDepth;
      let k = o.speculative.k ?? 4;
      const maxK = o.speculative.maxK ?? Math.max(8, k);
      const adaptive = o.speculative.adaptive ?? true;
      for (let going = true; going;) {
        const want = Math.min(k, o.maxNewTokens - r.tokens.length);
        const base = cache.length - 1; // the pending token x
        const draft: number[] = [];
        const q: Float64Array[] = [];
        for (let i = 0; i < want; i++) {
          if (i > 0) cache.append([draft[i - 1]]);
          const [logits] = logitsOf(model, cache.advance(d));
          r.draftPasses++;
          const qi = nextTokenProbs(logits, o);
          draft.push(greedy ? argmax(qi) : sample(qi, rng));
          q.push(qi);
        }
        // Verify: layers d+1..L for x and every drafted token, in one pass per layer; the last
        // drafted token's row gives a bonus token when the whole draft is accepted.
        cache.append([draft[want - 1]]);
        const full = logitsOf(model, cache.advance(L, want + 1));
        r.fullPasses++;
        r.proposed += want;
        let n = 0;
        let next = -1;
        for (; n < want; n++) {
          const p = nextTokenProbs(full[n], o);
          const v = greedy
            ? { accepted: argmax(p) === draft[n], token: argmax(p) }
            : speculativeAccept(draft[n], p, q[n], rng);
          if (!v.accepted) {
            next = v.token;
            break;
          }
        }
        if (n === want) next = pick(full[want], o, rng);
        r.accepted += n;
        for (let i = 0; i < n && going; i++) going = yield* emit(draft[i], L);
        if (going) going = yield* emit(next, L);
        if (!going) break;
        // Roll back the rejected positions; the last emitted token becomes the pending one.
        cache.truncate(base + n + 1);
        cache.append([next]);
        if (adaptive) k = n === want ? Math.min(maxK, k + 1) : Math.max(1, k - 1);
      }
    } else if (o.earlyExit) {
      const { exits, thresholds } = o.earlyExit;
      for (let going = true; going;) {
        let token = -1;
        let depth = L;
        for (const [j, e] of exits.entries()) {
          const [logits] = logitsOf(model, cache.advance(e));
          const confidence = softmax(logits)[argmax(logits)];
          if (confidence >= thresholds[j]) {
            token = pick(logits, o, rng);
            depth = e;
            break;
          }
        }
        if (token < 0) {
          token = pick(logitsOf(model, cache.advance(L))[0], o, rng);
          r.fullPasses++;
        }
        going = yield* emit(token, depth);
        if (going) cache.append([token]);
      }
    } else {
      for (let going = true; going;) {
        const token = pick(logitsOf(model, cache.advance(plainDepth))[0], o, rng);
        if (plainDepth === L) r.fullPasses++;
        going = yield* emit(token, plainDepth);
        if (going) cache.append([token]);
      }
    }
    r.decodeMs = performance.now() - t0 - paused;
  } finally {
    cache.dispose();
  }
  r.tokensPerSecond = (1000 * r.tokens.length) / r.decodeMs;
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
