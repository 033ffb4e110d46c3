/**
 * Labelled token sequences (text classification): n sequences of seqLen int32 token ids, one
 * class label each. The trainer and the evaluator take them like image sets.
 */
import { createRng, permutation } from './random.js';

export interface SequenceDataset {
  name: string;
  /** [n, seqLen] row-major token ids (padding included). */
  sequences: Int32Array;
  labels: Int32Array;
  n: number;
  seqLen: number;
  vocab: number;
  numClasses: number;
}

export interface SequenceBatch {
  /** [size, seqLen] token ids. */
  x: Int32Array;
  /** [size] class indices. */
  y: Int32Array;
  size: number;
}

export const isSequenceDataset = (d: object): d is SequenceDataset => 'sequences' in d;

/** One epoch of batches (seeded shuffling), as batches() does for images. */
export function* sequenceBatches(
  ds: SequenceDataset,
  options: { batchSize: number; shuffle?: boolean; seed?: number; dropLast?: boolean },
): Generator<SequenceBatch> {
  const { batchSize, shuffle = false, seed = 0, dropLast = false } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
  const order = shuffle ? permutation(ds.n, createRng(seed)) : Int32Array.from({ length: ds.n }, (_, i) => i);
  const count = dropLast ? Math.floor(ds.n / batchSize) : Math.ceil(ds.n / batchSize);
  const T = ds.seqLen;
  for (let b = 0; b < count; b++) {
    const idx = order.subarray(b * batchSize, Math.min(ds.n, (b + 1) * batchSize));
    const x = new Int32Array(idx.length * T);
    const y = new Int32Array(idx.length);
    idx.forEach((j, i) => {
      x.set(ds.sequences.subarray(j * T, (j + 1) * T), i * T);
      y[i] = ds.labels[j];
    });
    yield { x, y, size: idx.length };
  }
}
