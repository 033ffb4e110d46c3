import * as tf from '@tensorflow/tfjs-core';
import { SparsePerSampleConv2D } from '../kernels/sparse_per_sample_conv2d.js';
import { outputSize, perSampleConv2d, type ConvGeometry } from './per_sample_conv2d.js';

/**
 * A per-sample convolution whose kernels are sparse, plus one kernel shared by every sample (the
 * two parts of a compact PAD conv):
 *
 *   y[b] = shared ⊛ x[b] + Σ_i values[b, i] · (e_i ⊛ x[b]),
 *
 * e_i the one-hot kernel of element i (flat position index[i] in a [k, k, Cin, Cout] kernel).
 */
export interface SparseKernels {
  /** [B, nnz]: each sample's values of the sparse elements. */
  values: tf.Tensor2D;
  /** [nnz, 1] int32: the elements' flat positions in a [k, k, Cin, Cout] kernel (scatterND's form). */
  index: tf.Tensor2D;
  /** [k, k, Cin, Cout], the same for every sample (zero at the sparse positions), or null for none. */
  shared: tf.Tensor4D | null;
  outChannels: number;
}

const NO_GRADIENT =
  'sparsePerSampleConv2d runs deployed (compact) PAD layers and has no gradient: train the masked ' +
  'PadConv2d, then compact it';

/**
 * x [B, H, W, Cin] → [B, H', W', Cout], inference only (a gradient throws).
 *
 * Where the backend has the project's kernel (the native addon on wasm), the shared kernel runs as
 * one plain convolution (the engine's conv2d) and the sparse part costs 2·nnz multiply-adds per
 * output pixel: each element is one shifted axpy over the sample's input plane (native/blas.c), no
 * dense kernel is built. Elsewhere the portable composition: each sample's dense kernel is
 * scattered from the values (shared + sparse) and one per-sample convolution (im2col + batched
 * matMul) applies it, 2·k²·Cin·Cout multiply-adds per output pixel whatever nnz is.
 *
 * ```ts
 * const y = sparsePerSampleConv2d(x, { values, index, shared, outChannels: 32 }, { kernel: 3, stride: 1, padding: 'same' });
 * ```
 */
export function sparsePerSampleConv2d(x: tf.Tensor4D, s: SparseKernels, g: ConvGeometry): tf.Tensor4D {
  const [B, , , cin] = x.shape;
  const k = g.kernel;
  const P = k * k * cin * s.outChannels;
  const nnz = s.index.shape[0];
  const where = 'sparsePerSampleConv2d';
  if (x.rank !== 4) throw new Error(`${where}: x must be [B, H, W, Cin], got [${x.shape.join(', ')}]`);
  if (s.values.rank !== 2 || s.values.shape[0] !== B || s.values.shape[1] !== nnz)
    throw new Error(
      `${where}: values [${s.values.shape.join(', ')}] must be [${B}, ${nnz}] (batch × indexed elements)`,
    );
  if (s.index.rank !== 2 || s.index.shape[1] !== 1 || s.index.dtype !== 'int32')
    throw new Error(
      `${where}: index must be int32 [nnz, 1], got ${s.index.dtype} [${s.index.shape.join(', ')}]`,
    );
  const kernelShape = [k, k, cin, s.outChannels];
  if (s.shared && !s.shared.shape.every((d, i) => d === kernelShape[i]))
    throw new Error(
      `${where}: shared kernel [${s.shared.shape.join(', ')}] must be [${kernelShape.join(', ')}]`,
    );
  const [ho, wo] = outputSize(x.shape, k, g);
  if (ho < 1 || wo < 1)
    throw new Error(
      `${where}: a ${k}×${k} kernel does not fit a ${x.shape[1]}×${x.shape[2]} input with '${g.padding}'`,
    );

  if (x.dtype === 'float32' && tf.getKernel(SparsePerSampleConv2D, tf.getBackend())) {
    return tf.tidy(() => {
      // Through the kernel even when nnz = 0, so that a gradient throws on this path too.
      const base = s.shared ? tf.conv2d(x, s.shared, g.stride, g.padding) : null;
      const inputs = { x, values: s.values, index: s.index, ...(base ? { base } : {}) };
      const attrs = { kernel: k, stride: g.stride, padding: g.padding, outChannels: s.outChannels };
      return tf.engine().runKernel(SparsePerSampleConv2D, inputs, attrs) as tf.Tensor4D;
    });
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, values] = args as tf.Tensor[];
    // Each sample's kernel as a column of [|W|, B] (scatterND writes rows), then one per-sample conv.
    const shared = s.shared ? tf.reshape(s.shared, [P, 1]) : tf.zeros([P, 1]);
    const kernels =
      nnz > 0 ? tf.add(shared, tf.scatterND(s.index, tf.transpose(values), [P, B])) : tf.tile(shared, [1, B]);
    const perSample = tf.reshape(tf.transpose(kernels), [B, k * k * cin, s.outChannels]) as tf.Tensor3D;
    return {
      value: perSampleConv2d(xIn as tf.Tensor4D, perSample, g),
      gradFunc: () => {
        throw new Error(NO_GRADIENT);
      },
    };
  });
  return op(x, s.values) as tf.Tensor4D;
}

tf.registerGradient({
  kernelName: SparsePerSampleConv2D,
  gradFunc: () => {
    throw new Error(NO_GRADIENT);
  },
});
