import * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO, jsKernelConfigs } from './float_io.js';
import { ACTIVATION_CODE, type FusedActivation } from './activation.js';

/**
 * Training-mode batch normalisation over the last (channel) axis of x, every other axis a batch axis,
 * in two passes over memory, for the `wasm` and `cpu` backends (src/engine/ops/batch_norm_train.ts holds
 * the formula and uses these where registered).
 *   forward: x [..., C], gamma [G], beta [G] (G ≥ C, the first C used) → y, mean [C], rstd [C]
 *   backward: dy, x, mean, rstd, gamma → dx, dgamma [G], dbeta [G] (zero past C)
 * Why: as a chain of broadcasting tfjs ops the step runs ~8 kernels each way over the whole
 * activation; on wasm those broadcasts are scalar loops, and at small widths (few channels) they
 * cost more than the convolutions.
 */
export const BatchNormTrain = 'SortedNetBatchNormTrain';
export const BatchNormTrainGrad = 'SortedNetBatchNormTrainGrad';

/**
 * Both kernels' attributes. `activation`: a ReLU or ReLU6 applied after the normalisation (forward), and
 * whose mask the backward kernel recomputes from x, mean, rstd, gamma and its extra input beta.
 */
export interface BatchNormTrainAttrs {
  epsilon?: number;
  activation?: FusedActivation;
}

/** The activation as the native kernels number it: 0 none, 1 ReLU, 2 ReLU6. */
export function normActivation(a: BatchNormTrainAttrs['activation']): number {
  return ACTIVATION_CODE[a ?? 'linear'];
}
const UPPER = [Infinity, Infinity, 6];

function forward(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { x, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const { epsilon, activation } = args.attrs as unknown as BatchNormTrainAttrs & { epsilon: number };
  const kind = normActivation(activation);
  const upper = UPPER[kind];
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
  for (let c = 0; c < C; c++) {
    meanOut[c] = mean[c];
    rstdOut[c] = 1 / Math.sqrt(sq[c] / rows + epsilon);
  }
  // From the rounded mean and rstd, as the backward pass does, so that both see the same activation mask.
  const [scale, shift] = scaleShift(meanOut, rstdOut, g, b);
  for (let r = 0, i = 0; r < rows; r++)
    for (let c = 0; c < C; c++, i++) {
      const v = Math.fround(xs[i] * scale[c] + shift[c]);
      y[i] = kind === 0 ? v : Math.min(Math.max(v, 0), upper);
    }
  return infos;
}

/** The forward pass's affine map y = x·scale + shift per channel. */
function scaleShift(mean: Float32Array, rstd: Float32Array, gamma: Float32Array, beta: Float32Array) {
  const scale = new Float32Array(mean.length);
  const shift = new Float32Array(mean.length);
  for (let c = 0; c < mean.length; c++) {
    scale[c] = rstd[c] * gamma[c];
    shift[c] = beta[c] - mean[c] * rstd[c] * gamma[c];
  }
  return [scale, shift];
}

function backward(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const { dy, x, mean, rstd, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const kind = normActivation((args.attrs as unknown as BatchNormTrainAttrs).activation);
  const upper = UPPER[kind];
  const C = x.shape[x.shape.length - 1];
  const rows = tf.util.sizeFromShape(x.shape) / C;
  const { ins, outs, infos } = floatKernelIO(
    args.backend,
    BatchNormTrainGrad,
    kind ? [dy, x, mean, rstd, gamma, beta] : [dy, x, mean, rstd, gamma],
    [x.shape, gamma.shape, gamma.shape],
  );
  const [dyIn, xs, m, rs, g] = ins;
  outs[1].fill(0);
  outs[2].fill(0);
  // With a fused activation, dy only flows where the forward output was inside (0, upper).
  let dys = dyIn;
  if (kind) {
    const [scale, shift] = scaleShift(m, rs, g, ins[5]);
    dys = new Float32Array(dyIn.length);
    for (let r = 0, i = 0; r < rows; r++)
      for (let c = 0; c < C; c++, i++) {
        const v = Math.fround(xs[i] * scale[c] + shift[c]);
        dys[i] = v > 0 && v < upper ? dyIn[i] : 0;
      }
  }
  const [dx, dGamma, dBeta] = outs;
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
