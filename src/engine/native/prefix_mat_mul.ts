/**
 * The prefix matmul kernels (src/engine/ops/prefix_mat_mul.ts) through the addon's strided sgemm: the weight
 * prefix W[:rows, :k] is read in place with leading dimension K (or, for a few rows of x, from the weight's
 * packed copy, src/engine/native/packed_weights.ts), and the weight gradient is written into a
 * zeroed full-size matrix with leading dimension K. float32 only (floatKernelIO says so otherwise; the op
 * sends other dtypes to slice + matMul before they get here).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO } from '../kernels/float_io.js';
import { PrefixMatMul, PrefixMatMulGradInput, PrefixMatMulGradWeight } from '../kernels/prefix_mat_mul.js';
import type { NativeBlas } from './blas.js';
import { PACKED_MAX_ROWS, packedWeight } from './packed_weights.js';

type Inputs = Record<string, tf.TensorInfo>;

/** y [m, rows] = x [m, k] · W[:rows, :k]ᵀ */
export function nativePrefixMatMul(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { x, w } = args.inputs as Inputs;
    const { rows } = args.attrs as { rows: number };
    const [m, k] = x.shape;
    const { ins, outs, infos } = floatKernelIO(args.backend, PrefixMatMul, [x, w], [[m, rows]]);
    if (m <= PACKED_MAX_ROWS && blas.packedGemm()) {
      // A decoding step: the weight's packed copy, kept across steps.
      const p = packedWeight(blas, w, ins[1]);
      blas.sgemmPacked(m, rows, k, 1, ins[0], k, p.data, p.rows, p.cols, 0, outs[0], rows);
    } else blas.sgemm(false, true, m, rows, k, 1, ins[0], k, ins[1], w.shape[1], 0, outs[0], rows);
    return infos[0];
  };
}

/** dx [m, k] = dy [m, rows] · W[:rows, :k] */
export function nativePrefixMatMulGradInput(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { dy, w } = args.inputs as Inputs;
    const { k } = args.attrs as { k: number };
    const [m, rows] = dy.shape;
    const { ins, outs, infos } = floatKernelIO(args.backend, PrefixMatMulGradInput, [dy, w], [[m, k]]);
    blas.sgemm(false, false, m, k, rows, 1, ins[0], rows, ins[1], w.shape[1], 0, outs[0], k);
    return infos[0];
  };
}

/** dW [R, K]: dyᵀ · x in the [rows, k] corner, zero elsewhere. */
export function nativePrefixMatMulGradWeight(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { dy, x } = args.inputs as Inputs;
    const { shape } = args.attrs as { shape: [number, number] };
    const [m, rows] = dy.shape;
    const k = x.shape[1];
    const { ins, outs, infos } = floatKernelIO(args.backend, PrefixMatMulGradWeight, [dy, x], [shape]);
    if (rows < shape[0] || k < shape[1]) outs[0].fill(0);
    blas.sgemm(true, false, rows, k, m, 1, ins[0], rows, ins[1], k, 0, outs[0], shape[1]);
    return infos[0];
  };
}
