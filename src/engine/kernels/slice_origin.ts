/**
 * Where a slice's data came from: its source's data and the region taken, recorded by the wasm Slice kernel.
 * A sub-model's weight is a fresh slice of the full weight on every step, but the same region of the same
 * data: the portable matmul keys its kept transposed copies on the origin (src/engine/kernels/batch_mat_mul_wasm.ts).
 */
export interface SliceOrigin {
  /** The sliced tensor's dataId. */
  source: object;
  /** begin and size, as a key. */
  region: string;
}

const origins = new WeakMap<object, SliceOrigin>();

/** Records that the data `out` holds is `source`'s region begin..begin+size. */
export function recordSlice(
  out: object,
  source: object,
  begin: readonly number[],
  size: readonly number[],
): void {
  origins.set(out, { source, region: `${begin.join(',')}+${size.join(',')}` });
}

/** The origin of a slice's data; undefined for data that is not a slice. */
export function sliceOrigin(dataId: object): SliceOrigin | undefined {
  return origins.get(dataId);
}
