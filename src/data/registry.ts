/**
 * One entry point for every image dataset: a known name, or the path of a user's own data.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  makeTrainTest,
  normalise,
  splitTrainTest,
  subset,
  type ImageDataset,
  type TrainTest,
} from './dataset.js';
import { loadDigits, loadFashionMnist, loadMnist } from './mnist.js';
import { isIdxFolder, loadCsv, loadIdxFolder, loadImageFolder, type CsvOptions } from './user_data.js';

export const DATASET_NAMES = ['mnist', 'fashion-mnist', 'digits'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export interface LoadOptions {
  /** Per-channel mean/std normalisation from the train split. Default true. */
  normalise?: boolean;
  /** Seeds the split of sources that have none (digits, a single CSV or image folder). Default 0. */
  seed?: number;
  /** Test share of such a split. Default 0.2. */
  testFraction?: number;
  /** Keep only the first trainSize / testSize samples, for quick runs. */
  trainSize?: number;
  testSize?: number;
  /** digits.csv.gz when it is not in a default place. */
  digitsPath?: string;
  /** Shape of a user CSV's features, when it is not a square grey image. */
  csv?: Pick<CsvOptions, 'height' | 'width' | 'channels' | 'labelColumn' | 'delimiter' | 'scale'>;
}

const USER_DATA_FORMS = [
  'a .csv file (a header with a "label" column, or --label-column NAME|INDEX)',
  'a folder with train-images/train-labels/t10k-images/t10k-labels IDX files',
  'a folder with train.csv and test.csv',
  'a folder with train/<class>/ and test/<class>/ image subfolders',
  'a folder with <class>/*.png|*.jpg|*.pgm|*.ppm subfolders',
];

/**
 * Loads a dataset by name ('mnist', 'fashion-mnist', 'digits') or from a path (see
 * USER_DATA_FORMS), subsets and normalises it.
 *
 * ```ts
 * const { train, test } = loadDataset('digits', { seed: 1 });
 * ```
 */
export function loadDataset(nameOrPath: DatasetName | string, options: LoadOptions = {}): TrainTest {
  let split = loadRaw(nameOrPath, options);
  checkTrainable(split.train, nameOrPath);
  if (options.trainSize !== undefined || options.testSize !== undefined) {
    split = {
      train: options.trainSize === undefined ? split.train : subset(split.train, options.trainSize),
      test: options.testSize === undefined ? split.test : subset(split.test, options.testSize),
    };
  }
  if (options.normalise === false) return split;
  // The arrays are fresh from the files: normalising in place saves a second copy.
  const normalised = normalise(split, { inPlace: true });
  checkFinite(normalised.train, nameOrPath);
  checkFinite(normalised.test, nameOrPath);
  return normalised;
}

/**
 * What training needs of a training split, checked before it starts rather than discovered as a
 * NaN loss or a TF.js error: two classes at least, and no feature that never changes.
 */
export function checkTrainable(ds: ImageDataset, source: string): void {
  const seen = new Set(ds.labels);
  if (seen.size < 2) {
    const only = ds.labels.length ? (ds.classNames?.[ds.labels[0]] ?? String(ds.labels[0])) : 'none';
    throw new Error(
      `${source}: every training example has the label '${only}'; a classifier needs at least two classes ` +
        '(is the label column the right one?)',
    );
  }
  if (!ds.features) return;
  const c = ds.channels;
  for (let k = 0; k < c; k++) {
    let min = Infinity;
    let max = -Infinity;
    for (let i = k; i < ds.images.length; i += c) {
      min = Math.min(min, ds.images[i]);
      max = Math.max(max, ds.images[i]);
    }
    if (min === max) {
      throw new Error(
        `${source}: column '${ds.features[k]}' is ${min} in every training row: it carries no ` +
          'information and cannot be normalised; drop it from the file',
      );
    }
  }
}

/** After normalisation every value must be finite; names the dataset, example and column otherwise. */
function checkFinite(ds: ImageDataset, source: string): void {
  const size = ds.height * ds.width * ds.channels;
  const i = ds.images.findIndex((v) => !Number.isFinite(v));
  if (i < 0) return;
  const k = i % size;
  const column = ds.features ? `column '${ds.features[k]}'` : `pixel value ${k}`;
  throw new Error(
    `${source}: example ${Math.floor(i / size)} of '${ds.name}', ${column}, is ${ds.images[i]} after normalisation ` +
      '(values too large for float32 arithmetic); rescale that column',
  );
}

function loadRaw(nameOrPath: string, options: LoadOptions): TrainTest {
  const seed = options.seed ?? 0;
  const testFraction = options.testFraction ?? 0.2;
  switch (nameOrPath) {
    case 'mnist':
      return loadMnist();
    case 'fashion-mnist':
      return loadFashionMnist();
    case 'digits':
      return loadDigits({ path: options.digitsPath, seed, testFraction });
  }
  const path = nameOrPath;
  if (!existsSync(path)) {
    throw new Error(
      `unknown dataset '${path}': not one of ${DATASET_NAMES.join(', ')}, and no such file or folder. ` +
        `A path may be ${USER_DATA_FORMS.join('; ')}`,
    );
  }
  const split = (ds: ImageDataset): TrainTest => splitTrainTest(ds, testFraction, seed);

  if (statSync(path).isFile()) {
    if (/\.csv(\.gz)?$/i.test(path)) return split(loadCsv(path, options.csv));
    throw new Error(`'${path}' is not a dataset file: a path may be ${USER_DATA_FORMS.join('; ')}`);
  }
  const name = basename(path);
  if (isIdxFolder(path)) return loadIdxFolder(path);
  const has = (entry: string, folder: boolean): boolean => {
    const full = join(path, entry);
    return existsSync(full) && statSync(full).isDirectory() === folder;
  };
  if (has('train.csv', false) && has('test.csv', false)) {
    const train = loadCsv(join(path, 'train.csv'), { ...options.csv, name: `${name}/train` });
    const test = loadCsv(join(path, 'test.csv'), {
      ...options.csv,
      name: `${name}/test`,
      classNames: train.classNames,
    });
    return makeTrainTest(train, test);
  }
  if (has('train', true) && has('test', true)) {
    const train = loadImageFolder(join(path, 'train'), { name: `${name}/train` });
    const test = loadImageFolder(join(path, 'test'), {
      name: `${name}/test`,
      classNames: train.classNames,
      channels: train.channels === 3 ? 3 : 1,
    });
    return makeTrainTest(train, test);
  }
  if (readdirSync(path).length === 0) throw new Error(`dataset folder '${path}' is empty`);
  return split(loadImageFolder(path));
}
