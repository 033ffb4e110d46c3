/**
 * Mini-batches over an ImageDataset for one epoch: seeded shuffling and augmentation, as plain
 * typed arrays the trainer turns into tensors.
 */
import { augmentImage, type AugmentOptions } from './augment.js';
import type { ImageDataset } from './dataset.js';
import { createRng, permutation } from './random.js';

export interface Batch {
  /** [size, height, width, channels] row-major. */
  x: Float32Array;
  /** [size] class indices. */
  y: Int32Array;
  size: number;
}

export interface BatchOptions {
  batchSize: number;
  /** Visit samples in a seeded random order. Default false (evaluation order). */
  shuffle?: boolean;
  /** Seeds the order and the augmentation; pass `seed + epoch` for a new order each epoch. Default 0. */
  seed?: number;
  /** Skip the last batch when it is smaller than batchSize. Default false. */
  dropLast?: boolean;
  augment?: AugmentOptions;
}

/** How many batches `batches` yields. */
export function batchCount(n: number, batchSize: number, dropLast = false): number {
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/**
 * One epoch of batches; every sample appears once (except those of a dropped last batch).
 *
 * ```ts
 * for (const { x, y, size } of batches(train, { batchSize: 128, shuffle: true, seed: epoch })) { ... }
 * ```
 */
export function* batches(ds: ImageDataset, options: BatchOptions): Generator<Batch> {
  const { batchSize, shuffle = false, seed = 0, dropLast = false, augment } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
  }
  const rng = createRng(seed);
  const order = shuffle ? permutation(ds.n, rng) : Int32Array.from({ length: ds.n }, (_, i) => i);
  const sampleSize = ds.height * ds.width * ds.channels;
  const count = batchCount(ds.n, batchSize, dropLast);

  for (let b = 0; b < count; b++) {
    const indices = order.subarray(b * batchSize, Math.min(ds.n, (b + 1) * batchSize));
    const size = indices.length;
    const x = new Float32Array(size * sampleSize);
    const y = new Int32Array(size);
    for (let i = 0; i < size; i++) {
      let image = ds.images.subarray(indices[i] * sampleSize, (indices[i] + 1) * sampleSize);
      if (augment) image = augmentImage(image, ds, augment, rng);
      x.set(image, i * sampleSize);
      y[i] = ds.labels[indices[i]];
    }
    yield { x, y, size };
  }
}
