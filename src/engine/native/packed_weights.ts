/**
 * Packed copies of weights for products of a few rows (a decoding step, a batch of a few requests): the addon's
 * sgemmPacked reads a weight stored [out, in] as transposed panels of 32 outputs, so each output is one chain of
 * multiply-adds with no horizontal sums (native/blas.c). A weight is packed once, on its first such product, and
 * the copy is kept beside its data: a WeakMap keyed by the tensor's dataId, so a disposed weight's copy goes with
 * it. The copy relies on the weight's data never being rewritten in place, which holds for every weight here: an
 * optimizer's update (variable.assign) gives the variable new data, hence a new key. (What the project does write in
 * place, the decoding KV cache, never reaches a linear layer.) Training with batches of at most 12 rows repacks each
 * weight after every update: a transposing copy per weight and step.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { NativeBlas } from './blas.js';

/** Most rows of A that take the packed kernel (as for the addon's other few-row kernels); more go to OpenBLAS. */
export const PACKED_MAX_ROWS = 12;

const PANEL = 32;

/** Floats the packed copy of a rows × cols weight takes (panels of 32 rows, plus room to align them). */
export function packedLength(rows: number, cols: number): number {
  return Math.ceil(rows / PANEL) * cols * PANEL + 16;
}

interface Packed {
  rows: number;
  cols: number;
  data: Float32Array;
}

const packs = new WeakMap<object, Packed>();

/** The packed copy of the 2-D weight `w` whose values are `values`, made on first use. */
export function packedWeight(blas: NativeBlas, w: tf.TensorInfo, values: Float32Array): Packed {
  const [rows, cols] = w.shape;
  const hit = packs.get(w.dataId);
  // A reshape shares its source's data: the key is the data, the shape is checked.
  if (hit !== undefined && hit.rows === rows && hit.cols === cols) return hit;
  const packed = { rows, cols, data: new Float32Array(packedLength(rows, cols)) };
  blas.packWeight(values, rows, cols, cols, packed.data);
  packs.set(w.dataId, packed);
  return packed;
}
