/**
 * Decoding with a sorted language model (SortedNet §3, Sorted LLaMA):
 *  - greedy: plain greedy decoding of one sub-model;
 *  - speculative: the shallow sub-model drafts k tokens, the full model verifies them in ONE
 *    forward pass; the output is identical to greedy decoding of the full model, k adapts
 *    (grows after a fully accepted draft, shrinks after a rejection);
 *  - early exit: per token, exits are tried from shallow to deep through the shared head, and the
 *    token is emitted at the first exit whose max softmax probability reaches its threshold.
 * No KV cache: every step recomputes the (short) context, so the states of layers a token skipped
 * are computed when a later token needs them — the "fill later" of instance-aware early exit.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Transformer } from '../models/transformer.js';
import { FULL, type SubModel } from '../sorted/submodel.js';

const EVAL = { mode: 'eval', key: 'generate' } as const;

export interface GenerateStats {
  tokens: number[];
  /** Forward passes of the full model (verification passes for speculative decoding). */
  fullPasses: number;
  /** Forward passes of the draft sub-model. */
  draftPasses: number;
  /** Draft tokens proposed and accepted (speculative). */
  proposed: number;
  accepted: number;
  /** Mean exit depth per emitted token (early exit). */
  meanExitDepth?: number;
  ms: number;
}

function context(model: Transformer, tokens: number[]): number[] {
  return tokens.slice(Math.max(0, tokens.length - model.config.maxLen));
}

/** Argmax of the logits at every position of `tokens` under `sub`. */
function argmaxAll(model: Transformer, tokens: number[], sub: SubModel): Int32Array {
  return tf.tidy(() => {
    const ids = tf.tensor2d(tokens, [1, tokens.length], 'int32');
    return tf.argMax(tf.squeeze(model.forward(ids, sub, EVAL), [0]), -1).dataSync() as Int32Array;
  });
}

function checkPrompt(model: Transformer, prompt: readonly number[], steps: number): void {
  if (model.config.task !== 'lm') throw new Error('generate: the model must be a language model (task lm)');
  if (prompt.length === 0) throw new Error('generate: the prompt is empty');
  if (!Number.isInteger(steps) || steps < 1)
    throw new Error(`generate: steps ${steps} must be a positive integer`);
  for (const t of prompt) {
    if (!Number.isInteger(t) || t < 0 || t >= model.config.vocab) {
      throw new Error(`generate: token ${t} is outside the vocabulary 0..${model.config.vocab - 1}`);
    }
  }
}

export function greedy(
  model: Transformer,
  prompt: readonly number[],
  steps: number,
  sub: SubModel = FULL,
): GenerateStats {
  checkPrompt(model, prompt, steps);
  const t0 = performance.now();
  const tokens = [...prompt];
  for (let i = 0; i < steps; i++) {
    const ctx = context(model, tokens);
    const next = argmaxAll(model, ctx, sub);
    tokens.push(next[next.length - 1]);
  }
  return {
    tokens: tokens.slice(prompt.length),
    fullPasses: steps,
    draftPasses: 0,
    proposed: 0,
    accepted: 0,
    ms: performance.now() - t0,
  };
}

export interface SpeculativeOptions {
  /** The shallow sub-model that drafts. */
  draft: SubModel;
  /** Initial draft length (adaptive afterwards), default 4. */
  k?: number;
  maxK?: number;
}

export function speculative(
  model: Transformer,
  prompt: readonly number[],
  steps: number,
  o: SpeculativeOptions,
): GenerateStats {
  checkPrompt(model, prompt, steps);
  model.validate(o.draft);
  if (prompt.length + steps > model.config.maxLen) {
    // Past maxLen greedy decoding slides its window, and one verification pass cannot reproduce that.
    throw new Error(
      `speculative: prompt (${prompt.length}) + steps (${steps}) must fit maxLen ${model.config.maxLen}`,
    );
  }
  const t0 = performance.now();
  const tokens = [...prompt];
  let k = o.k ?? 4;
  const maxK = o.maxK ?? 8;
  const s: GenerateStats = { tokens: [], fullPasses: 0, draftPasses: 0, proposed: 0, accepted: 0, ms: 0 };
  while (tokens.length - prompt.length < steps) {
    const want = Math.min(k, steps - (tokens.length - prompt.length));
    const draft: number[] = [];
    for (let i = 0; i < want; i++) {
      const next = argmaxAll(model, context(model, [...tokens, ...draft]), o.draft);
      draft.push(next[next.length - 1]);
      s.draftPasses++;
    }
    const window = [...tokens, ...draft];
    const verify = argmaxAll(model, window, FULL);
    s.fullPasses++;
    s.proposed += draft.length;
    // verify[j] is the full model's greedy choice after window[0..j]; draft[0] follows window[base].
    const base = window.length - draft.length - 1;
    let n = 0;
    while (n < draft.length && verify[base + n] === draft[n]) n++;
    s.accepted += n;
    tokens.push(...draft.slice(0, n));
    // The full model's own token comes free: at the first mismatch, or after a fully accepted draft.
    if (tokens.length - prompt.length < steps) tokens.push(verify[base + n]);
    k = n === draft.length ? Math.min(maxK, k + 1) : Math.max(1, k - 1);
  }
  s.tokens = tokens.slice(prompt.length, prompt.length + steps);
  s.ms = performance.now() - t0;
  return s;
}

export interface EarlyExitOptions {
  /** Exit depths, shallow to deep; the last should be the full depth. */
  exits: number[];
  /** Confidence threshold per exit except the last (e.g. [0.95, 0.9, 0.8]). */
  thresholds: number[];
}

export function earlyExit(
  model: Transformer,
  prompt: readonly number[],
  steps: number,
  o: EarlyExitOptions,
): GenerateStats {
  checkPrompt(model, prompt, steps);
  const exits = [...o.exits];
  if (
    exits.length === 0 ||
    exits.some((d, i) => d < 1 || d > model.config.layers || (i > 0 && d <= exits[i - 1]))
  ) {
    throw new Error(`early exit: exits [${exits}] must increase within 1..${model.config.layers}`);
  }
  if (o.thresholds.length !== exits.length - 1) {
    throw new Error(
      `early exit: ${exits.length} exits need ${exits.length - 1} thresholds, got ${o.thresholds.length}`,
    );
  }
  const t0 = performance.now();
  const tokens = [...prompt];
  let depthSum = 0;
  for (let i = 0; i < steps; i++) {
    const ctx = context(model, tokens);
    const { token, depth } = tf.tidy(() => {
      let h = model.embed(tf.tensor2d(ctx, [1, ctx.length], 'int32'), FULL);
      let d = 0;
      for (const [j, exit] of exits.entries()) {
        for (; d < exit; d++) h = model.block(d, h, FULL, EVAL);
        const last = tf.slice(h, [0, ctx.length - 1, 0], [1, 1, -1]);
        const probs = tf.softmax(tf.reshape(model.lmLogits(last), [-1]));
        const best = tf.argMax(probs).dataSync()[0];
        if (j === exits.length - 1 || probs.dataSync()[best] >= o.thresholds[j])
          return { token: best, depth: exit };
      }
      throw new Error('unreachable');
    });
    tokens.push(token);
    depthSum += depth;
  }
  return {
    tokens: tokens.slice(prompt.length),
    fullPasses: 0,
    draftPasses: 0,
    proposed: 0,
    accepted: 0,
    meanExitDepth: depthSum / steps,
    ms: performance.now() - t0,
  };
}
