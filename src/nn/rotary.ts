/**
 * Rotary position embedding (RoPE; Su et al. 2021), in the rotate-half form of GPT-NeoX and
 * Hugging Face LLaMA: the pair (x_i, x_{i+d/2}) of every head is rotated by pos·base^(−2i/d).
 * Positions are absolute, so a cached key keeps the rotation it got when it was written.
 */
import * as tf from '@tensorflow/tfjs-core';

interface Tables {
  length: number;
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
}

const tables = new Map<string, Tables>();

/** cos and sin of every angle for positions 0..length−1: [length, headDim] each, kept across calls. */
function tablesFor(headDim: number, base: number, length: number): Tables {
  const key = `${headDim}/${base}`;
  let t = tables.get(key);
  if (t && t.length >= length && !t.cos.isDisposed) return t;
  const n = Math.max(length, 2 * (t?.length ?? 64));
  const half = headDim / 2;
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.pow(base, (-2 * i) / headDim);
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

/** x: [B, h, T, d] at absolute positions start..start+T−1 → the same, rotated. */
export function applyRotary(x: tf.Tensor4D, start: number, base = 10000): tf.Tensor4D {
  const [, , T, d] = x.shape;
  if (d % 2 !== 0) throw new Error(`rotary: head size ${d} must be even`);
  const t = tablesFor(d, base, start + T);
  const cos = tf.slice(t.cos, [start, 0], [T, d]);
  const sin = tf.slice(t.sin, [start, 0], [T, d]);
  const [x1, x2] = tf.split(x, 2, 3);
  const rotated = tf.concat([tf.neg(x2), x1], 3); // rotate_half
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
}
