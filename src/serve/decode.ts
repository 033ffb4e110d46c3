/**
 * Token-by-token decoding for streaming: greedy or sampled (temperature, top-k, top-p, seeded)
 * from the sub-model of depth `exit` (its exit goes through the shared head), or self-speculative
 * (src/infer/generate.ts: the shallow draft proposes, the full model verifies; identical to greedy
 * decoding of the full model). Yields after every token so a server streams to several clients
 * at once and stops decoding when a client goes away (`return()`).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Transformer } from '../models/transformer.js';
import { createRng } from '../data/random.js';
import { speculative } from '../infer/generate.js';

export interface DecodeOptions {
  maxNewTokens: number;
  /** 0: greedy (argmax). */
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Depth of the sub-model that decodes (default: all layers). */
  exit?: number;
  /** Self-speculative decoding with a draft of this depth (greedy only). */
  speculative?: { draftDepth: number; k?: number };
}

/** Samples an index from logits with temperature, top-k and top-p (nucleus) filtering. */
export function sampleToken(logits: Float32Array, o: DecodeOptions, u: number): number {
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
  if (o.temperature === 0) return order[0];
  const keep = order.slice(0, o.topK ? o.topK : order.length);
  const max = logits[keep[0]];
  let probs = keep.map((i) => Math.exp((logits[i] - max) / o.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (o.topP !== undefined && o.topP < 1) {
    let mass = 0;
    let n = 0;
    while (n < probs.length && mass < o.topP * total) mass += probs[n++];
    probs = probs.slice(0, Math.max(1, n));
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = u * total;
  for (let i = 0; i < probs.length; i++) {
    r -= probs[i];
    if (r < 0) return keep[i];
  }
  return keep[probs.length - 1];
}

export async function* decodeStream(
  model: Transformer,
  prompt: readonly number[],
  o: DecodeOptions,
): AsyncGenerator<number, void> {
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  if (o.speculative) {
    // The draft/verify rounds run in one call; their tokens are streamed as they come out of it.
    const s = speculative(model, prompt, o.maxNewTokens, {
      draft: { depth: o.speculative.draftDepth },
      k: o.speculative.k,
    });
    for (const t of s.tokens) {
      yield t;
      await turn();
    }
    return;
  }
  const rng = createRng(o.seed ?? 0);
  const sub = o.exit === undefined ? {} : { depth: o.exit };
  const tokens = [...prompt];
  for (let i = 0; i < o.maxNewTokens; i++) {
    const context = tokens.slice(Math.max(0, tokens.length - model.config.maxLen));
    const logits = tf.tidy(() => {
      const ids = tf.tensor2d(context, [1, context.length], 'int32');
      const all = model.forward(ids, sub, { mode: 'eval', key: 'generate' }); // [1, T, vocab]
      return tf.slice(all, [0, context.length - 1, 0], [1, 1, -1]).dataSync() as Float32Array;
    });
    const next = sampleToken(logits, o, rng.next());
    tokens.push(next);
    yield next;
    await turn();
  }
}
