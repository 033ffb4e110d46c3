/**
 * Calibrated early exit (CALM, Schuster et al. 2022): thresholds chosen on held-out text so that
 * a wanted share of tokens equals the full model's choice, with as little compute as possible.
 *
 * Over every position of the calibration sequences, one batched pass through the blocks gives
 * each exit's confidence (by default the top-1 − top-2 logit margin; or the top softmax
 * probability) and argmax, and the full model's argmax.
 * A threshold set then decides, per position, where the token leaves (the first exit whose
 * confidence is above its threshold, as `generate` does) and whether it agrees with the full
 * model; its cost is the layers run plus one head per exit checked. A coordinate search picks
 * the cheapest thresholds whose agreement reaches the target: exits that do not pay for their
 * check are left out of the result, so decoding checks only the exits worth checking.
 *
 * Sources: 'text' scores the text itself (teacher forcing); 'greedy' scores the full model's own
 * greedy continuations of prompts cut from the text, which is what decoding sees (CALM measures
 * consistency against the full model's outputs the same way).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Transformer } from '../models/transformer.js';
import { generateBatch } from './batch.js';
import { exitConfidence, type ExitMeasure } from './sampling.js';

export interface CalibrateOptions {
  /** Wanted share of tokens equal to the full model's argmax, in (0, 1]. */
  agreement: number;
  /** Exits to consider (default: every depth below the full one). */
  exits?: readonly number[];
  /** 'text' (teacher forcing on the text) or 'greedy' (on the full model's continuations; default). */
  source?: 'text' | 'greedy';
  /** Tokens per window (default: the model's context, at most 128). With 'greedy': prompt + new tokens. */
  window?: number;
  /** With 'greedy': prompt tokens per window (default: a quarter of the window). */
  promptTokens?: number;
  /** Windows at most (default 32), spread over the text. */
  windows?: number;
  /** Cost of one exit check (final norm + head + softmax) in layers (default 0.25). */
  checkCost?: number;
  /** The confidence measure (see sampling.ts); default: whichever of the two calibrates cheaper. */
  measure?: ExitMeasure;
}

export interface Calibration {
  /** The exits worth checking and their thresholds: `earlyExit: { exits, thresholds }`. */
  exits: number[];
  thresholds: number[];
  measure: ExitMeasure;
  /** Share of calibration positions whose token equals the full model's argmax. */
  agreement: number;
  /** Calibration positions scored. */
  positions: number;
  /** Share of positions leaving at each depth (the full depth included). */
  exitShare: Record<number, number>;
  meanExitDepth: number;
  /** Estimated compute per token against full decoding (layers + heads), ≤ 1. */
  relativeCost: number;
}

/** Per-position statistics of every exit: confidence, agreement with the full model. */
export interface ExitStats {
  depths: number[];
  /** conf[j][n]: confidence of exit j at position n (by the measure exitStats was given). */
  conf: Float64Array[];
  /** agree[j][n]: exit j's argmax equals the full model's. */
  agree: Uint8Array[];
  positions: number;
}

const fail = (msg: string): never => {
  throw new Error(`calibrate: ${msg}`);
};

/**
 * Scores exits on sequences of tokens: positions from `from[i]` (default 0) to the second-last
 * of sequence i predict the next token; every sequence has the same length.
 */
export function exitStats(
  model: Transformer,
  sequences: readonly (readonly number[])[],
  depths: readonly number[],
  from: readonly number[] = [],
  measure: ExitMeasure = 'margin',
): ExitStats {
  const L = model.config.layers;
  const V = model.config.vocab;
  const all = [...depths, L];
  const conf: number[][] = depths.map(() => []);
  const agree: number[][] = depths.map(() => []);
  const BATCH = 8;
  for (let b = 0; b < sequences.length; b += BATCH) {
    const rows = sequences.slice(b, b + BATCH);
    const T = rows[0].length;
    // Tensors out of tidy, read after it (tidy would walk the elements of typed arrays it returns).
    const out = tf.tidy(() =>
      model.forwardExits(tf.tensor2d(rows.flat() as number[], [rows.length, T], 'int32'), {}, all, {
        mode: 'eval',
        key: 'calibrate',
      }),
    );
    const logits = out.map((t) => t.dataSync() as Float32Array);
    tf.dispose(out);
    const full = logits[all.length - 1];
    rows.forEach((_, r) => {
      for (let t = from[b + r] ?? 0; t < T - 1; t++) {
        const at = (r * T + t) * V;
        const best = argmaxAt(full, at, V);
        depths.forEach((_, j) => {
          const x = logits[j];
          conf[j].push(exitConfidence(measure, x, at, V));
          agree[j].push(argmaxAt(x, at, V) === best ? 1 : 0);
        });
      }
    });
  }
  return {
    depths: [...depths],
    conf: conf.map((c) => Float64Array.from(c)),
    agree: agree.map((a) => Uint8Array.from(a)),
    positions: conf[0]?.length ?? 0,
  };
}

function argmaxAt(x: Float32Array, at: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[at + i] > x[at + best]) best = i;
  return best;
}

/**
 * What a threshold set does on the scored positions: exit j fires when conf > thresholds[j];
 * an infinite threshold means the exit is not checked (no check cost).
 */
export function evaluateThresholds(
  s: ExitStats,
  thresholds: readonly number[],
  layers: number,
  checkCost: number,
): { agreement: number; cost: number; leftAt: Int32Array } {
  const m = s.depths.length;
  const leftAt = new Int32Array(s.positions);
  let agreeing = 0;
  let cost = 0;
  const checked = thresholds.map((t) => Number.isFinite(t));
  for (let n = 0; n < s.positions; n++) {
    let j = 0;
    let checks = 0;
    for (; j < m; j++) {
      if (!checked[j]) continue;
      checks++;
      if (s.conf[j][n] > thresholds[j]) break;
    }
    if (j < m) {
      leftAt[n] = s.depths[j];
      agreeing += s.agree[j][n];
      cost += s.depths[j] + checks * checkCost;
    } else {
      leftAt[n] = layers;
      agreeing++;
      cost += layers + (checks + 1) * checkCost;
    }
  }
  return { agreement: agreeing / s.positions, cost: cost / s.positions, leftAt };
}

/** The cheapest thresholds on these statistics whose agreement reaches the target. */
export function chooseThresholds(
  s: ExitStats,
  layers: number,
  agreement: number,
  checkCost = 0.25,
): { thresholds: number[]; agreement: number; cost: number } {
  const m = s.depths.length;
  // Candidates per exit: its confidences at up to 200 quantiles (a threshold just below a
  // value lets that position exit), 0 = always leave and Infinity = never checked.
  const candidates = s.conf.map((c) => {
    const sorted = Float64Array.from(c).sort();
    const q = new Set<number>([0, Infinity]);
    const steps = Math.min(200, sorted.length);
    for (let i = 0; i < steps; i++) {
      // Rounded down to 1e-3 (thresholds users can type); the position at v still exits.
      q.add(Math.max(0, Math.floor(sorted[Math.floor((i * sorted.length) / steps)] * 1000 - 1e-9) / 1000));
    }
    return [...q].sort((x, y) => x - y);
  });
  const never = new Array<number>(m).fill(Infinity);
  let best = { thresholds: never, ...evaluateThresholds(s, never, layers, checkCost) };
  // Coordinate descent from "never exit" (always feasible): each exit in turn takes the
  // threshold that lowers the cost most while the agreement stays at the target.
  for (let pass = 0; pass < 6; pass++) {
    let improved = false;
    for (let j = 0; j < m; j++) {
      for (const t of candidates[j]) {
        if (t === best.thresholds[j]) continue;
        const th = best.thresholds.map((x, i) => (i === j ? t : x));
        const e = evaluateThresholds(s, th, layers, checkCost);
        if (e.agreement >= agreement && e.cost < best.cost - 1e-12) {
          best = { thresholds: th, ...e };
          improved = true;
        }
      }
    }
    if (!improved) break;
  }
  return { thresholds: best.thresholds, agreement: best.agreement, cost: best.cost };
}

/** Windows of `window` tokens spread evenly over the token stream. */
function windowsOf(stream: readonly number[], window: number, count: number): number[][] {
  if (stream.length < window + 1)
    fail(`the text has ${stream.length} tokens; it needs at least ${window + 1} (one window of ${window})`);
  const n = Math.min(count, Math.floor(stream.length / window));
  const stride = Math.floor((stream.length - window) / Math.max(1, n - 1 || 1));
  return Array.from({ length: n }, (_, i) => stream.slice(i * stride, i * stride + window));
}

/** Thresholds for early exit that reach `agreement` on the token stream of a text (see the top). */
export function calibrateEarlyExit(
  model: Transformer,
  stream: readonly number[],
  o: CalibrateOptions,
): Calibration {
  const c = model.config;
  const L = c.layers;
  if (!(o.agreement > 0 && o.agreement <= 1))
    fail(`agreement must be in (0, 1], e.g. 0.97; got ${o.agreement}`);
  const exits = o.exits ? [...o.exits] : Array.from({ length: L - 1 }, (_, i) => i + 1);
  if (exits.length === 0) fail(`the model has ${L} layer(s): no exit below the full depth to calibrate`);
  exits.forEach((d, i) => {
    if (!Number.isInteger(d) || d < 1 || d >= L) fail(`exit ${d} must be a depth in 1..${L - 1}`);
    if (i > 0 && d <= exits[i - 1]) fail(`exits [${exits}] must increase`);
  });
  const checkCost = o.checkCost ?? 0.25;
  if (!(checkCost >= 0)) fail(`checkCost must be ≥ 0, got ${o.checkCost}`);
  const source = o.source ?? 'greedy';
  const window = o.window ?? Math.min(c.maxLen, 128);
  if (!Number.isInteger(window) || window < 2 || window > c.maxLen)
    fail(`window ${window} must be an integer in 2..${c.maxLen} (the context length)`);
  const count = o.windows ?? 32;
  stream.forEach((t, i) => {
    if (t < 0 || t >= c.vocab) fail(`token ${t} at ${i} is outside the vocabulary 0..${c.vocab - 1}`);
  });
  let sequences: number[][];
  let from: number[] = [];
  if (source === 'text') sequences = windowsOf(stream, window, count);
  else {
    const p = o.promptTokens ?? Math.max(1, Math.floor(window / 4));
    if (!Number.isInteger(p) || p < 1 || p >= window)
      fail(`promptTokens ${p} must be an integer in 1..${window - 1}`);
    const prompts = windowsOf(stream, p, count);
    const b = generateBatch(model, prompts, { maxNewTokens: window - p });
    sequences = prompts.map((q, i) => [...q, ...b.sequences[i].tokens]);
    // Only windows continued to the end keep one length (no stop tokens are set, so all are).
    from = sequences.map(() => p - 1);
  }
  // Without a measure, both are scored and the cheaper calibration wins (the margin usually
  // separates right from wrong exits better; on a nearly flat model the probability can).
  const tried = (o.measure ? [o.measure] : (['margin', 'probability'] as const)).map((measure) => {
    const stats = exitStats(model, sequences, exits, from, measure);
    if (stats.positions === 0) fail('no positions to score; give a longer text');
    return { measure, stats, chosen: chooseThresholds(stats, L, o.agreement, checkCost) };
  });
  const { measure, stats, chosen } = tried.reduce((a, b) => (b.chosen.cost < a.chosen.cost ? b : a));
  const { leftAt } = evaluateThresholds(stats, chosen.thresholds, L, checkCost);
  const counts: Record<number, number> = {};
  let depthSum = 0;
  for (const d of leftAt) {
    counts[d] = (counts[d] ?? 0) + 1;
    depthSum += d;
  }
  const exitShare = Object.fromEntries(Object.entries(counts).map(([d, n]) => [d, n / stats.positions]));
  const keep = chosen.thresholds.map((t, j) => (Number.isFinite(t) ? j : -1)).filter((j) => j >= 0);
  return {
    exits: keep.map((j) => exits[j]),
    thresholds: keep.map((j) => chosen.thresholds[j]),
    measure,
    agreement: chosen.agreement,
    positions: stats.positions,
    exitShare,
    meanExitDepth: depthSum / stats.positions,
    relativeCost: chosen.cost / (L + checkCost),
  };
}
