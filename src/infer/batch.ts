/**
 * Batched generation: several prompts decoded together, one forward per step for the whole
 * batch (Hugging Face `generate` on a padded batch). Prompts are LEFT-padded so that every row's
 * next token sits in the same column; an additive key mask hides the padding from attention,
 * and every row stops on its own (stop token, stop condition, length) while the others go on.
 * Row r samples with seed + r, so with one prompt per row the tokens are what `generate` gives
 * that prompt alone with that seed (greedy: the same tokens; tested).
 *
 * Positions: learned positions ('gpt') are counted per row from its first real token; rotary
 * positions ('llama') are shared by the batch, which changes nothing because rotary attention
 * depends only on the distance between query and key.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Transformer } from '../models/transformer.js';
import { keepKv, type KeyValue } from '../nn/attention.js';
import { createRng, type Rng } from '../data/random.js';
import { argmax, nextTokenProbs, sample, type SamplingOptions } from './sampling.js';
import { logProbability, makeProcessor } from './logits_process.js';
import { checkOptions, type GenerateOptions } from './generate.js';

export interface BatchOptions extends Omit<GenerateOptions, 'onToken' | 'stopWhen'> {
  /** Called with (row, token) as each token is decided. */
  onToken?: (row: number, token: number) => void;
  /** Called after each token of a row with its new tokens; true ends that row ('stop-string'). */
  stopWhen?: (row: number, tokens: readonly number[]) => boolean;
}

export interface BatchSequence {
  /** Index of the prompt this sequence continues. */
  prompt: number;
  tokens: number[];
  logprobs?: number[];
  stoppedBy: 'length' | 'stop-token' | 'stop-string';
}

export interface BatchResult {
  /** numReturnSequences per prompt, in prompt order. */
  sequences: BatchSequence[];
  prefillMs: number;
  decodeMs: number;
  /** New tokens of all rows per second of decoding. */
  tokensPerSecond: number;
}

const MASKED = -1e9;

/** Greedy or sampled continuations of every prompt, decoded as one batch. */
export function generateBatch(
  model: Transformer,
  prompts: readonly (readonly number[])[],
  o: BatchOptions,
): BatchResult {
  if (prompts.length === 0) throw new Error('generate: no prompts; give at least one');
  if (o.earlyExit || o.speculative)
    throw new Error(
      'generate: early exit and speculative decoding run one sequence at a time; give one prompt and numReturnSequences 1',
    );
  const n = o.numReturnSequences ?? 1;
  const { numReturnSequences, onToken, stopWhen, ...single } = o;
  void numReturnSequences;
  // Every prompt checked as `generate` would (vocabulary, context, options).
  let maxNew = 0;
  let temperature = 0;
  for (const p of prompts) ({ maxNew, temperature } = checkOptions(model, p, single));
  if (n > 1 && temperature === 0)
    throw new Error(
      'generate: numReturnSequences > 1 needs sampling (doSample or a temperature > 0); greedy returns the same sequence every time',
    );
  if (o.maxNewTokens === undefined)
    maxNew = Math.min(...prompts.map((p) => checkOptions(model, p, single).maxNew));
  const rows = prompts.flatMap((p, i) => Array.from({ length: n }, () => ({ prompt: i, ids: p })));
  const B = rows.length;
  const c = model.config;
  const depth = o.exit ?? c.layers;
  const width = rows.reduce((m, r) => Math.max(m, r.ids.length), 0);
  const pad = rows.map((r) => width - r.ids.length);
  const padded = pad.some((p) => p > 0);
  const rngs: Rng[] = rows.map((_, i) => createRng((o.seed ?? 0) + i));
  const sampling: SamplingOptions = { temperature, topK: o.topK, topP: o.topP };
  const stop = new Set(o.stopTokens ?? []);
  const processor = makeProcessor(o);
  const seqs = rows.map((r) => [...r.ids]);
  const out: BatchSequence[] = rows.map((r) => ({
    prompt: r.prompt,
    tokens: [],
    ...(o.logprobs ? { logprobs: [] } : {}),
    stoppedBy: 'length',
  }));
  const done = new Array<boolean>(B).fill(false);
  const kv: (KeyValue | null)[] = new Array<KeyValue | null>(depth).fill(null);

  /** Hidden states of the last position of every row after running ids [B, m] at columns T..T+m−1. */
  const step = (ids: number[][], T: number): Float32Array => {
    const m = ids[0].length;
    const logits = tf.tidy(() => {
      const x = tf.tensor2d(ids.flat(), [B, m], 'int32');
      let h = model.tokens.forward(x) as tf.Tensor3D;
      if (model.positions) {
        const pos = rows.flatMap((_, b) => Array.from({ length: m }, (_, j) => Math.max(0, T + j - pad[b])));
        h = tf.add(h, model.positions.forward(tf.tensor2d(pos, [B, m], 'int32'))) as tf.Tensor3D;
      }
      // Prompts of one length have no padding to hide: no mask to build or add.
      let keyMask: tf.Tensor4D | undefined;
      if (padded) {
        const mask = new Float32Array(B * (T + m));
        for (let b = 0; b < B; b++) for (let t = 0; t < pad[b]; t++) mask[b * (T + m) + t] = MASKED;
        keyMask = tf.tensor4d(mask, [B, 1, 1, T + m]);
      }
      for (let l = 0; l < depth; l++) {
        const r = model.blockStep(l, h, {}, kv[l], T, keyMask);
        kv[l] = keepKv(kv[l], r.kv);
        h = r.y;
      }
      // A step of one position per row needs no slice: h is the last position.
      const last = tf.reshape(m === 1 ? h : tf.slice(h, [0, m - 1, 0], [B, 1, -1]), [B, -1]);
      return model.lmLogits(last);
    });
    const flat = logits.dataSync() as Float32Array;
    logits.dispose();
    return flat;
  };

  const V = c.vocab;
  let t0 = performance.now();
  let prefillMs: number;
  let total = 0;
  try {
    let logits = step(
      rows.map((r, b) => [...new Array<number>(pad[b]).fill(r.ids[0]), ...r.ids]),
      0,
    );
    prefillMs = performance.now() - t0;
    t0 = performance.now();
    for (let T = width; ; T++) {
      const next: number[] = [];
      for (let b = 0; b < B; b++) {
        if (done[b]) {
          next.push(seqs[b][seqs[b].length - 1]); // a finished row idles; its output is ignored
          continue;
        }
        const raw = logits.subarray(b * V, (b + 1) * V);
        const l = processor ? processor(raw, seqs[b], out[b].tokens.length) : raw;
        const token = temperature === 0 ? argmax(l) : sample(nextTokenProbs(l, sampling), rngs[b]);
        out[b].tokens.push(token);
        out[b].logprobs?.push(logProbability(l, token, temperature));
        seqs[b].push(token);
        total++;
        onToken?.(b, token);
        if (stop.has(token)) out[b].stoppedBy = 'stop-token';
        else if (stopWhen?.(b, out[b].tokens)) out[b].stoppedBy = 'stop-string';
        done[b] = out[b].stoppedBy !== 'length' || out[b].tokens.length >= maxNew;
        next.push(token);
      }
      if (done.every(Boolean)) break;
      logits = step(
        next.map((t) => [t]),
        T,
      );
    }
  } finally {
    for (const e of kv) if (e) tf.dispose([e.k, e.v]);
  }
  const decodeMs = performance.now() - t0;
  return { sequences: out, prefillMs, decodeMs, tokensPerSecond: (1000 * total) / decodeMs };
}
