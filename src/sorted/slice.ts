/**
 * Prefix slicing of shared weights: the heart of "sorted" sub-models. A sub-model uses the
 * FIRST units of every elastic dimension, so its weights are a prefix box of the full tensor.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * The leading box `w[:s0, :s1, …]` of `w`. Returns `w` itself (no copy) when the box is the
 * whole tensor; otherwise one slice whose gradient is zero outside the box (tfjs's Slice grad pads).
 * `sizes` entries of -1 or undefined keep the full axis.
 */
export function prefix(w: tf.Tensor, sizes: readonly (number | undefined)[], where = 'tensor'): tf.Tensor {
  let full = true;
  const size = w.shape.map((d, i) => {
    const s = sizes[i];
    if (s === undefined || s === -1) return d;
    if (!Number.isInteger(s) || s < 1 || s > d) {
      throw new Error(`${where}: slice ${s} on axis ${i} is outside 1..${d} (shape [${w.shape.join(', ')}])`);
    }
    if (s !== d) full = false;
    return s;
  });
  if (full) return w;
  return tf.slice(
    w,
    w.shape.map(() => 0),
    size,
  );
}

/** Units for a width fraction: ceil(fraction·full), rounded up to a multiple, at least `multiple`. */
export function unitsFor(fraction: number, full: number, multiple = 1, where = 'width'): number {
  if (!(fraction > 0 && fraction <= 1)) {
    throw new Error(`${where}: width fraction ${fraction} must be in (0, 1]`);
  }
  const u = Math.ceil((fraction * full) / multiple - 1e-9) * multiple;
  return Math.min(full, Math.max(multiple, u));
}

/** Checks that a requested unit count fits the layer, with the numbers in the message. */
export function checkUnits(units: number, full: number, where: string, what = 'width'): number {
  if (!Number.isInteger(units) || units < 1)
    throw new Error(`${what} ${units} in '${where}' must be a positive integer`);
  if (units > full) throw new Error(`${what} ${units} > layer size ${full} in '${where}'`);
  return units;
}
