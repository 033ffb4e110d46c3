import * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO, jsKernelConfigs } from './float_io.js';

/**
 * Rotary position embedding in the rotate-half form, one pass, for the `wasm` and `cpu` backends
 * (src/engine/ops/rotary.ts holds the formula and uses it where registered):
 *   x [..., T, d], cos [T, d], sin [T, d] → y = x·cos + rotate_half(x)·sin,
 * rotate_half([x1, x2]) = [−x2, x1]; `inverse` rotates the other way (sin negated), which is the
 * gradient. Each product is rounded to float32 before the sum, so the result is bit for bit what
 * the composition of stock kernels (mul, mul, add) gives.
 * Why: as stock kernels the rotation is 6 kernels for q and 6 for k in every layer of every
 * decoding step, a fifth of a small LM's per-token kernel count.
 */
export const Rotary = 'SortedNetRotary';

/** [T, d] of a call: x [..., T, d] with cos and sin [T, d], checked (shared with the native kernel). */
export function rotaryShape(x: tf.TensorInfo, cos: tf.TensorInfo, sin: tf.TensorInfo): [number, number] {
  const d = x.shape[x.shape.length - 1];
  const T = x.shape[x.shape.length - 2];
  if (cos.shape[0] !== T || cos.shape[1] !== d || sin.shape[0] !== T || sin.shape[1] !== d)
    throw new Error(
      `${Rotary}: cos/sin must be [${T}, ${d}] for x [${x.shape.join(', ')}], got [${cos.shape.join(', ')}] and [${sin.shape.join(', ')}]`,
    );
  return [T, d];
}

function rotary(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, cos, sin } = args.inputs as Record<string, tf.TensorInfo>;
  const { inverse } = args.attrs as { inverse: boolean };
  const [T, d] = rotaryShape(x, cos, sin);
  const { ins, outs, infos } = floatKernelIO(args.backend, Rotary, [x, cos, sin], [x.shape]);
  const [xs, c, s] = ins;
  const [y] = outs;
  const half = d >> 1;
  const sign = inverse ? -1 : 1;
  const f = Math.fround;
  const rows = xs.length / d;
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const t = (r % T) * d;
    for (let i = 0; i < half; i++) {
      const a = xs[o + i];
      const b = xs[o + i + half];
      y[o + i] = f(a * c[t + i]) + f(-b * sign * s[t + i]);
      y[o + i + half] = f(b * c[t + i + half]) + f(a * sign * s[t + i + half]);
    }
  }
  return infos[0];
}

export const rotaryConfigs: tf.KernelConfig[] = jsKernelConfigs(Rotary, rotary);
