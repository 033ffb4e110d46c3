/**
 * An image classification dataset as plain typed arrays. The trainer turns batches of it into
 * tensors; nothing here depends on TensorFlow.js.
 */
import { createRng, permutation } from './random.js';

export interface ImageDataset {
  name: string;
  /** [n, height, width, channels] row-major (NHWC); scaled to [0, 1] by loaders, then `normalise`d. */
  images: Float32Array;
  /** Class index of each sample, in 0..numClasses-1. */
  labels: Int32Array;
  n: number;
  height: number;
  width: number;
  channels: number;
  numClasses: number;
  /** Name of each class index, when the source has names (folders, Fashion-MNIST). */
  classNames?: string[];
  /** Tabular data (1×1, one channel per feature): the feature names, in order. */
  features?: string[];
  /** Set by `normalise`: new inputs (inference, a user's image) must be normalised the same way. */
  normalisation?: ChannelStats;
}

export interface TrainTest {
  train: ImageDataset;
  test: ImageDataset;
}

/** Mean and standard deviation of each channel. */
export interface ChannelStats {
  mean: number[];
  std: number[];
}

/** Checks that the sizes agree and the labels are in range; returns the dataset. */
export function checkDataset(ds: ImageDataset): ImageDataset {
  const { name, n, height, width, channels, numClasses } = ds;
  for (const [key, value] of Object.entries({ n, height, width, channels, numClasses })) {
    if (!Number.isInteger(value) || value < (key === 'n' ? 0 : 1)) {
      throw new Error(`dataset '${name}': ${key} must be a positive integer, got ${value}`);
    }
  }
  const pixels = n * height * width * channels;
  if (ds.images.length !== pixels) {
    throw new Error(
      `dataset '${name}': images hold ${ds.images.length} values, ` +
        `n×H×W×C = ${n}×${height}×${width}×${channels} = ${pixels}`,
    );
  }
  if (ds.labels.length !== n)
    throw new Error(`dataset '${name}': ${ds.labels.length} labels for ${n} images`);
  for (let i = 0; i < n; i++) {
    const label = ds.labels[i];
    if (label < 0 || label >= numClasses) {
      throw new Error(`dataset '${name}': label ${label} of sample ${i} is outside 0..${numClasses - 1}`);
    }
  }
  if (ds.classNames && ds.classNames.length !== numClasses) {
    throw new Error(`dataset '${name}': ${ds.classNames.length} class names for ${numClasses} classes`);
  }
  return ds;
}

/**
 * Pairs a train and a test split loaded separately: their image shapes must agree, and both get
 * the larger class count (a test split may lack the last class).
 */
export function makeTrainTest(train: ImageDataset, test: ImageDataset): TrainTest {
  const shape = (ds: ImageDataset): string => `${ds.height}×${ds.width}×${ds.channels}`;
  if (shape(train) !== shape(test)) {
    throw new Error(
      `train '${train.name}' images are ${shape(train)} but test '${test.name}' images are ${shape(test)}`,
    );
  }
  const numClasses = Math.max(train.numClasses, test.numClasses);
  const classNames = train.classNames ?? test.classNames;
  return {
    train: checkDataset({ ...train, numClasses, classNames }),
    test: checkDataset({ ...test, numClasses, classNames }),
  };
}

/** Per-channel mean and standard deviation over every pixel of every image. */
export function channelStats(ds: ImageDataset): ChannelStats {
  const c = ds.channels;
  const images = ds.images;
  const count = images.length / c;
  const mean: number[] = [];
  const std: number[] = [];
  for (let k = 0; k < c; k++) {
    let sum = 0;
    let sumSquares = 0;
    for (let i = k; i < images.length; i += c) {
      const value = images[i];
      sum += value;
      sumSquares += value * value;
    }
    mean.push(sum / count);
    const sd = Math.sqrt(Math.max(0, sumSquares / count - mean[k] * mean[k]));
    std.push(sd > 1e-8 ? sd : 1); // a constant channel stays constant rather than becoming NaN
  }
  return { mean, std };
}

/**
 * (x - mean) / std per channel, into a new dataset; `inPlace` overwrites ds.images instead, for
 * a loader that owns a large fresh array (a copy of MNIST's train split is 188 MB).
 */
export function applyNormalisation(
  ds: ImageDataset,
  stats: ChannelStats,
  { inPlace = false }: { inPlace?: boolean } = {},
): ImageDataset {
  const c = ds.channels;
  if (stats.mean.length !== c || stats.std.length !== c) {
    throw new Error(`dataset '${ds.name}' has ${c} channels, normalisation stats have ${stats.mean.length}`);
  }
  const source = ds.images;
  const images = inPlace ? source : new Float32Array(source.length);
  for (let k = 0; k < c; k++) {
    const mean = stats.mean[k];
    const scale = 1 / stats.std[k];
    for (let i = k; i < images.length; i += c) images[i] = (source[i] - mean) * scale;
  }
  return { ...ds, images, normalisation: stats };
}

/**
 * Normalises both splits with statistics of the train split only, so nothing about the test
 * split leaks into training. See applyNormalisation for `inPlace`.
 */
export function normalise(split: TrainTest, options: { inPlace?: boolean } = {}): TrainTest {
  if (split.train.normalisation) throw new Error(`dataset '${split.train.name}' is already normalised`);
  const stats = channelStats(split.train);
  return {
    train: applyNormalisation(split.train, stats, options),
    test: applyNormalisation(split.test, stats, options),
  };
}

/** The first n samples, or n samples drawn without replacement when a seed is given. */
export function subset(ds: ImageDataset, n: number, seed?: number): ImageDataset {
  if (!Number.isInteger(n) || n < 0) throw new Error(`subset: n must be a non-negative integer, got ${n}`);
  if (n >= ds.n) return ds;
  const indices =
    seed === undefined
      ? Int32Array.from({ length: n }, (_, i) => i)
      : permutation(ds.n, createRng(seed)).slice(0, n);
  return select(ds, indices, ds.name);
}

/** A seeded random split for sources that ship without one (sklearn digits, a user's folder). */
export function splitTrainTest(ds: ImageDataset, testFraction: number, seed: number): TrainTest {
  if (!(testFraction > 0 && testFraction < 1)) {
    throw new Error(`testFraction must be in (0, 1), got ${testFraction}`);
  }
  const order = permutation(ds.n, createRng(seed));
  const testCount = Math.round(ds.n * testFraction);
  if (testCount === 0 || testCount === ds.n) {
    throw new Error(
      `dataset '${ds.name}' has ${ds.n} samples: too few to split with testFraction ${testFraction}`,
    );
  }
  return {
    train: select(ds, order.subarray(testCount), `${ds.name}/train`),
    test: select(ds, order.subarray(0, testCount), `${ds.name}/test`),
  };
}

function select(ds: ImageDataset, indices: Int32Array, name: string): ImageDataset {
  const size = ds.height * ds.width * ds.channels;
  const images = new Float32Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  indices.forEach((from, to) => {
    images.set(ds.images.subarray(from * size, (from + 1) * size), to * size);
    labels[to] = ds.labels[from];
  });
  return { ...ds, name, images, labels, n: indices.length };
}
