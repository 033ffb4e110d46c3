/**
 * Rotary position embedding (RoPE; Su et al. 2021), in the rotate-half form of GPT-NeoX and
 * Hugging Face LLaMA: the pair (x_i, x_{i+d/2}) of every head is rotated by pos·base^(−2i/d).
 * Positions are absolute, so a cached key keeps the rotation it got when it was written.
 */
import * as tf from '@tensorflow/tfjs-core';
import { rotate } from '../engine/ops/rotary.js';

/**
 * Llama 3's frequency scaling (Hugging Face `rope_scaling` with rope_type "llama3"): wavelengths
 * longer than originalMaxPositions/lowFreqFactor are divided by `factor`, shorter than
 * originalMaxPositions/highFreqFactor kept, and those between interpolated smoothly.
 */
export interface RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

/** The rotary positions of one attention layer: the base (`rope_theta`) and an optional scaling. */
export interface RopeOptions {
  base: number;
  scaling?: RopeScaling;
}

/**
 * The inverse frequencies base^(−2i/d), i < d/2, Llama-3-scaled when asked (as Hugging Face's
 * `_compute_llama3_parameters` in modeling_rope_utils.py does).
 */
export function inverseFrequencies(headDim: number, rope: RopeOptions): Float64Array {
  const half = headDim / 2;
  const inv = Float64Array.from({ length: half }, (_, i) => Math.pow(rope.base, (-2 * i) / headDim));
  const s = rope.scaling;
  if (!s) return inv;
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositions / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth =
      (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

const ropeKey = (d: number, rope: RopeOptions): string =>
  `${d}/${rope.base}/${JSON.stringify(rope.scaling ?? null)}`;

interface Tables {
  length: number;
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
}

const tables = new Map<string, Tables>();

/** cos and sin of every angle for positions 0..length−1: [length, headDim] each, kept across calls. */
function tablesFor(headDim: number, rope: RopeOptions, length: number): Tables {
  const key = ropeKey(headDim, rope);
  let t = tables.get(key);
  if (t && t.length >= length && !t.cos.isDisposed) return t;
  const n = Math.max(length, 2 * (t?.length ?? 64));
  const half = headDim / 2;
  const inv = inverseFrequencies(headDim, rope);
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * inv[i];
      cos[p * headDim + i] = cos[p * headDim + i + half] = Math.cos(angle);
      sin[p * headDim + i] = sin[p * headDim + i + half] = Math.sin(angle);
    }
  }
  t?.cos.dispose();
  t?.sin.dispose();
  t = {
    length: n,
    cos: tf.keep(tf.tensor2d(cos, [n, headDim])),
    sin: tf.keep(tf.tensor2d(sin, [n, headDim])),
  };
  tables.set(key, t);
  return t;
}

/**
 * The cos/sin rows of the positions last asked for: every layer and both q and k of one decoding
 * step rotate the same positions, so the slices are made once per step, not 2 × layers times.
 */
let lastRows: { key: string; cos: tf.Tensor2D; sin: tf.Tensor2D } | null = null;
function rows(
  d: number,
  rope: RopeOptions,
  start: number,
  T: number,
): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const key = `${ropeKey(d, rope)}/${start}/${T}`;
  if (lastRows && lastRows.key === key && !lastRows.cos.isDisposed && !lastRows.sin.isDisposed)
    return lastRows;
  const t = tablesFor(d, rope, start + T);
  if (lastRows) tf.dispose([lastRows.cos, lastRows.sin]);
  lastRows = {
    key,
    cos: tf.keep(tf.slice(t.cos, [start, 0], [T, d])),
    sin: tf.keep(tf.slice(t.sin, [start, 0], [T, d])),
  };
  return lastRows;
}

/** x: [B, h, T, d] at absolute positions start..start+T−1 → the same, rotated (base or full options). */
export function applyRotary(x: tf.Tensor4D, start: number, rope: number | RopeOptions = 10000): tf.Tensor4D {
  const [, , T, d] = x.shape;
  if (d % 2 !== 0) throw new Error(`rotary: head size ${d} must be even`);
  const { cos, sin } = rows(d, typeof rope === 'number' ? { base: rope } : rope, start, T);
  return rotate(x, cos, sin) as tf.Tensor4D;
}
