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
  csv?: Pick<CsvOptions, 'height' | 'width' | 'channels' | 'labelColumn' | 'scale'>;
}

const USER_DATA_FORMS = [
  'a .csv file (label column first or named "label")',
  'a folder with train-images/train-labels/t10k-images/t10k-labels IDX files',
  'a folder with train.csv and test.csv',
  'a folder with train/<class>/ and test/<class>/ image subfolders',
  'a folder with <class>/*.png|*.pgm|*.ppm subfolders',
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
  if (options.trainSize !== undefined || options.testSize !== undefined) {
    split = {
      train: options.trainSize === undefined ? split.train : subset(split.train, options.trainSize),
      test: options.testSize === undefined ? split.test : subset(split.test, options.testSize),
    };
  }
  // The arrays are fresh from the files: normalising in place saves a second copy.
  return options.normalise === false ? split : normalise(split, { inPlace: true });
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
