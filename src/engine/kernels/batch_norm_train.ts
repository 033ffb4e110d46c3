import * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO, jsKernelConfigs } from './float_io.js';

/**
 * Training-mode batch normalisation over the last (channel) axis of x, every other axis a batch axis,
 * in two passes over memory, for the `wasm` and `cpu` backends (src/engine/ops/batch_norm_train.ts holds
 * the formula and uses these where registered).
 *   forward: x [..., C], gamma [C], beta [C] → y, mean [C], rstd [C]
 *   backward: dy, x, mean, rstd, gamma → dx, dgamma, dbeta
 * Why: as a chain of broadcasting tfjs ops the step runs ~8 kernels each way over the whole
 * activation; on wasm those broadcasts are scalar loops, and at small widths (few channels) they
 * cost more than the convolutions.
 */
export const BatchNormTrain = 'SortedNetBatchNormTrain';
export const BatchNormTrainGrad = 'SortedNetBatchNormTrainGrad';

function forward(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { x, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const { epsilon } = args.attrs as { epsilon: number };
  const C = x.shape[x.shape.length - 1];
  const { ins, outs, infos } = floatKernelIO(
    args.backend,
    BatchNormTrain,
    [x, gamma, beta],
    [x.shape, [C], [C]],
  );
  const [xs, g, b] = ins;
  const [y, meanOut, rstdOut] = outs;
  const rows = xs.length / C;
  const sum = new Float64Array(C);
  for (let r = 0, i = 0; r < rows; r++) for (let c = 0; c < C; c++, i++) sum[c] += xs[i];
  const mean = sum.map((s) => s / rows);
  const sq = new Float64Array(C);
  for (let r = 0, i = 0; r < rows; r++)
    for (let c = 0; c < C; c++, i++) {
      const d = xs[i] - mean[c];
      sq[c] += d * d;
    }
  const scale = new Float32Array(C);
  const shift = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    const rstd = 1 / Math.sqrt(sq[c] / rows + epsilon);
    meanOut[c] = mean[c];
    rstdOut[c] = rstd;
    scale[c] = rstd * g[c];
    shift[c] = b[c] - mean[c] * scale[c];
  }
  for (let r = 0, i = 0; r < rows; r++) for (let c = 0; c < C; c++, i++) y[i] = xs[i] * scale[c] + shift[c];
  return infos;
}

function backward(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { dy, x, mean, rstd, gamma } = args.inputs as Record<string, tf.TensorInfo>;
  const C = x.shape[x.shape.length - 1];
  const { ins, outs, infos } = floatKernelIO(
    args.backend,
    BatchNormTrainGrad,
    [dy, x, mean, rstd, gamma],
    [x.shape, [C], [C]],
  );
  const [dys, xs, m, rs, g] = ins;
  const [dx, dGamma, dBeta] = outs;
  const rows = xs.length / C;
  const sumDy = new Float64Array(C);
  const sumDyXhat = new Float64Array(C);
  for (let r = 0, i = 0; r < rows; r++)
    for (let c = 0; c < C; c++, i++) {
      sumDy[c] += dys[i];
      sumDyXhat[c] += dys[i] * (xs[i] - m[c]) * rs[c];
    }
  // dx = γ/σ · (dy − Σdy/N − x̂ · Σ(dy x̂)/N)
  const k = new Float32Array(C);
  const meanDy = new Float32Array(C);
  const meanDyXhat = new Float32Array(C);
  for (let c = 0; c < C; c++) {
    dBeta[c] = sumDy[c];
    dGamma[c] = sumDyXhat[c];
    k[c] = g[c] * rs[c];
    meanDy[c] = sumDy[c] / rows;
    meanDyXhat[c] = sumDyXhat[c] / rows;
  }
  for (let r = 0, i = 0; r < rows; r++)
    for (let c = 0; c < C; c++, i++) {
      const xhat = (xs[i] - m[c]) * rs[c];
      dx[i] = k[c] * (dys[i] - meanDy[c] - xhat * meanDyXhat[c]);
    }
  return infos;
}

export const batchNormTrainConfigs: tf.KernelConfig[] = [
  ...jsKernelConfigs(BatchNormTrain, forward),
  ...jsKernelConfigs(BatchNormTrainGrad, backward),
];
