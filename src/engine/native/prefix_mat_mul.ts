/**
 * The prefix matmul kernels (src/engine/ops/prefix_mat_mul.ts) through the addon's strided sgemm: the weight
 * prefix W[:rows, :k] is read in place with leading dimension K, and the weight gradient is written into a
 * zeroed full-size matrix with leading dimension K.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { NativeBlas } from './blas.js';

type Inputs = Record<string, tf.TensorInfo>;

function views(backend: BackendWasm, ts: tf.TensorInfo[]): Float32Array[] {
  return ts.map((t) => backend.typedArrayFromHeap(t) as Float32Array);
}

function missing(kernel: string): never {
  throw new Error(`${kernel}: float32 inputs only (the op sends others to slice + matMul)`);
}

/** y [m, rows] = x [m, k] · W[:rows, :k]ᵀ */
export function nativePrefixMatMul(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { x, w } = args.inputs as Inputs;
    if (x.dtype !== 'float32' || w.dtype !== 'float32') missing('SortedNetPrefixMatMul');
    const { rows } = args.attrs as { rows: number };
    const backend = args.backend as BackendWasm;
    const [m, k] = x.shape;
    const K = w.shape[1];
    const y = backend.makeOutput([m, rows], 'float32');
    const [xs, ws, ys] = views(backend, [x, w, y]);
    blas.sgemm(false, true, m, rows, k, 1, xs, k, ws, K, 0, ys, rows);
    return y;
  };
}

/** dx [m, k] = dy [m, rows] · W[:rows, :k] */
export function nativePrefixMatMulGradInput(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { dy, w } = args.inputs as Inputs;
    if (dy.dtype !== 'float32' || w.dtype !== 'float32') missing('SortedNetPrefixMatMulGradInput');
    const { k } = args.attrs as { k: number };
    const backend = args.backend as BackendWasm;
    const [m, rows] = dy.shape;
    const K = w.shape[1];
    const dx = backend.makeOutput([m, k], 'float32');
    const [dys, ws, dxs] = views(backend, [dy, w, dx]);
    blas.sgemm(false, false, m, k, rows, 1, dys, rows, ws, K, 0, dxs, k);
    return dx;
  };
}

/** dW [R, K]: dyᵀ · x in the [rows, k] corner, zero elsewhere. */
export function nativePrefixMatMulGradWeight(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { dy, x } = args.inputs as Inputs;
    if (dy.dtype !== 'float32' || x.dtype !== 'float32') missing('SortedNetPrefixMatMulGradWeight');
    const { shape } = args.attrs as { shape: [number, number] };
    const backend = args.backend as BackendWasm;
    const [m, rows] = dy.shape;
    const k = x.shape[1];
    const dw = backend.makeOutput(shape, 'float32');
    const [dys, xs, dws] = views(backend, [dy, x, dw]);
    if (rows < shape[0] || k < shape[1]) dws.fill(0);
    blas.sgemm(true, false, rows, k, m, 1, dys, rows, xs, k, 0, dws, shape[1]);
    return dw;
  };
}
