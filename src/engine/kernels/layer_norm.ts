import * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO, jsKernelConfigs } from './float_io.js';

/**
 * Layer normalisation over the last axis of x, one pass per row, for the `wasm` and `cpu` backends
 * (src/engine/ops/layer_norm.ts holds the formula and uses these where registered).
 *   forward: x [..., e], gamma [e], beta [e] → y, mean [rows], rstd [rows]
 *   backward: dy, x, mean, rstd, gamma → dx, dgamma, dbeta
 * Why: a transformer calls it twice per block; as tfjs ops each call is ~8 broadcasting kernels
 * each way, most of the per-step kernel count at small batch.
 */
export const LayerNormFwd = 'SortedNetLayerNorm';
export const LayerNormGrad = 'SortedNetLayerNormGrad';

function forward(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { x, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const { epsilon } = args.attrs as { epsilon: number };
  const e = x.shape[x.shape.length - 1];
  const rows = tf.util.sizeFromShape(x.shape) / e;
  const { ins, outs, infos } = floatKernelIO(
    args.backend,
    LayerNormFwd,
    [x, gamma, beta],
    [x.shape, [rows], [rows]],
  );
  const [xs, g, b] = ins;
  const [y, meanOut, rstdOut] = outs;
  for (let r = 0; r < rows; r++) {
    const o = r * e;
    let s = 0;
    for (let j = 0; j < e; j++) s += xs[o + j];
    const mean = s / e;
    let sq = 0;
    for (let j = 0; j < e; j++) {
      const d = xs[o + j] - mean;
      sq += d * d;
    }
    const rstd = 1 / Math.sqrt(sq / e + epsilon);
    meanOut[r] = mean;
    rstdOut[r] = rstd;
    for (let j = 0; j < e; j++) y[o + j] = (xs[o + j] - mean) * rstd * g[j] + b[j];
  }
  return infos;
}

function backward(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { dy, x, mean, rstd, gamma } = args.inputs as Record<string, tf.TensorInfo>;
  const e = x.shape[x.shape.length - 1];
  const { ins, outs, infos } = floatKernelIO(
    args.backend,
    LayerNormGrad,
    [dy, x, mean, rstd, gamma],
    [x.shape, [e], [e]],
  );
  const [dys, xs, m, rs, g] = ins;
  const [dx, dGamma, dBeta] = outs;
  const rows = xs.length / e;
  const sumGamma = new Float64Array(e);
  const sumBeta = new Float64Array(e);
  for (let r = 0; r < rows; r++) {
    const o = r * e;
    // dx = (gx − mean(gx) − x̂ · mean(gx x̂)) / σ with gx = dy·γ
    let sg = 0;
    let sgx = 0;
    for (let j = 0; j < e; j++) {
      const xhat = (xs[o + j] - m[r]) * rs[r];
      const gx = dys[o + j] * g[j];
      sg += gx;
      sgx += gx * xhat;
      sumGamma[j] += dys[o + j] * xhat;
      sumBeta[j] += dys[o + j];
    }
    const mg = sg / e;
    const mgx = sgx / e;
    for (let j = 0; j < e; j++) {
      const xhat = (xs[o + j] - m[r]) * rs[r];
      dx[o + j] = (dys[o + j] * g[j] - mg - xhat * mgx) * rs[r];
    }
  }
  dGamma.set(sumGamma);
  dBeta.set(sumBeta);
  return infos;
}

export const layerNormConfigs: tf.KernelConfig[] = [
  ...jsKernelConfigs(LayerNormFwd, forward),
  ...jsKernelConfigs(LayerNormGrad, backward),
];
