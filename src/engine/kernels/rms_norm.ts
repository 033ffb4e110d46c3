import * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO, jsKernelConfigs } from './float_io.js';

/**
 * RMS normalisation over the last axis of x, one pass per row, for the `wasm` and `cpu` backends
 * (src/engine/ops/rms_norm.ts holds the formula and uses these where registered).
 *   forward: x [..., e], gamma [e] → y, rstd [rows]
 *   backward: dy, x, rstd, gamma → dx, dgamma
 * Why: as stock kernels RMSNorm is 6 kernels each way (square, mean, add, rsqrt, mul, mul); a
 * LLaMA-style block calls it twice and every exit once, most of a decoding step's kernel count
 * after the matmuls.
 */
export const RmsNormFwd = 'SortedNetRmsNorm';
export const RmsNormGrad = 'SortedNetRmsNormGrad';

function forward(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { x, gamma } = args.inputs as Record<string, tf.TensorInfo>;
  const { epsilon } = args.attrs as { epsilon: number };
  const e = x.shape[x.shape.length - 1];
  const rows = tf.util.sizeFromShape(x.shape) / e;
  const { ins, outs, infos } = floatKernelIO(args.backend, RmsNormFwd, [x, gamma], [x.shape, [rows]]);
  const [xs, g] = ins;
  const [y, rstdOut] = outs;
  for (let r = 0; r < rows; r++) {
    const o = r * e;
    let sq = 0;
    for (let j = 0; j < e; j++) sq += xs[o + j] * xs[o + j];
    const rstd = 1 / Math.sqrt(sq / e + epsilon);
    rstdOut[r] = rstd;
    for (let j = 0; j < e; j++) y[o + j] = xs[o + j] * rstd * g[j];
  }
  return infos;
}

function backward(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { dy, x, rstd, gamma } = args.inputs as Record<string, tf.TensorInfo>;
  const e = x.shape[x.shape.length - 1];
  const { ins, outs, infos } = floatKernelIO(args.backend, RmsNormGrad, [dy, x, rstd, gamma], [x.shape, [e]]);
  const [dys, xs, rs, g] = ins;
  const [dx, dGamma] = outs;
  const rows = xs.length / e;
  const sumGamma = new Float64Array(e);
  for (let r = 0; r < rows; r++) {
    const o = r * e;
    const rr = rs[r];
    // dx = r·g·dy − x·r³·mean(g·dy·x)
    let s = 0;
    for (let j = 0; j < e; j++) {
      s += g[j] * dys[o + j] * xs[o + j];
      sumGamma[j] += dys[o + j] * xs[o + j] * rr;
    }
    const k = (rr * rr * rr * s) / e;
    for (let j = 0; j < e; j++) dx[o + j] = rr * g[j] * dys[o + j] - xs[o + j] * k;
  }
  dGamma.set(sumGamma);
  return infos;
}

export const rmsNormConfigs: tf.KernelConfig[] = [
  ...jsKernelConfigs(RmsNormFwd, forward),
  ...jsKernelConfigs(RmsNormGrad, backward),
];
