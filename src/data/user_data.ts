/**
 * A user's own image dataset, from files: an IDX pair (the MNIST format), a CSV of labels and
 * pixel values, or a folder with one subfolder of images per class.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { checkDataset, makeTrainTest, type ImageDataset, type TrainTest } from './dataset.js';
import { readIdx } from './idx.js';
import { IMAGE_EXTENSIONS, readImageFile, type DecodedImage } from './image_file.js';

/** Names shared by every loader here. */
export interface UserDataOptions {
  /** Dataset name in messages and checkpoints; defaults to the file or folder name. */
  name?: string;
  /**
   * Class names the labels must come from, in index order: pass the train split's `classNames`
   * when loading its test split, so both map a class to the same index.
   */
  classNames?: string[];
}

// ---------------------------------------------------------------------------------------------
// IDX

/**
 * An images file ([N, H, W] or [N, H, W, C]) and a labels file ([N]) in IDX format, gzipped or
 * not. uint8 pixels are scaled to [0, 1]; other element types are kept as they are.
 */
export function loadIdxPair(
  imagesPath: string,
  labelsPath: string,
  options: UserDataOptions = {},
): ImageDataset {
  const images = readIdx(imagesPath);
  const labels = readIdx(labelsPath);
  if (images.dims.length !== 3 && images.dims.length !== 4) {
    throw new Error(
      `'${imagesPath}': images must have 3 dims [N, H, W] or 4 [N, H, W, C], found [${images.dims}]`,
    );
  }
  if (labels.dims.length !== 1)
    throw new Error(`'${labelsPath}': labels must have 1 dim [N], found [${labels.dims}]`);
  const [n, height, width, channels = 1] = images.dims;
  if (labels.dims[0] !== n) {
    throw new Error(`'${labelsPath}' has ${labels.dims[0]} labels but '${imagesPath}' has ${n} images`);
  }

  const scale = images.data instanceof Uint8Array ? 1 / 255 : 1;
  const source = images.data;
  const pixels = new Float32Array(source.length);
  for (let i = 0; i < pixels.length; i++) pixels[i] = source[i] * scale;
  const labelValues = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const value = labels.data[i];
    if (!Number.isInteger(value) || value < 0) {
      throw new Error(`'${labelsPath}': label ${value} of sample ${i} is not a non-negative integer`);
    }
    labelValues[i] = value;
  }
  return checkDataset({
    name: options.name ?? basename(imagesPath),
    images: pixels,
    labels: labelValues,
    n,
    height,
    width,
    channels,
    numClasses: options.classNames?.length ?? maxPlusOne(labelValues),
    classNames: options.classNames,
  });
}

/** The four IDX files of a folder laid out like MNIST's, found by their usual name prefixes. */
export const IDX_FILE_PATTERNS = {
  trainImages: /^train-images/,
  trainLabels: /^train-labels/,
  testImages: /^(t10k|test)-images/,
  testLabels: /^(t10k|test)-labels/,
};

/** True when the folder holds the four IDX files that `loadIdxFolder` expects. */
export function isIdxFolder(folder: string): boolean {
  const files = readdirSync(folder);
  return Object.values(IDX_FILE_PATTERNS).every((pattern) => files.some((file) => pattern.test(file)));
}

/**
 * A folder with `train-images-*`, `train-labels-*`, `t10k-images-*` (or `test-images-*`) and
 * `t10k-labels-*` IDX files, as MNIST and Fashion-MNIST ship.
 */
export function loadIdxFolder(folder: string, options: UserDataOptions = {}): TrainTest {
  const files = readdirSync(folder).sort();
  const find = (pattern: RegExp): string => {
    const matches = files.filter((file) => pattern.test(file));
    if (matches.length !== 1) {
      throw new Error(
        `folder '${folder}' needs exactly one IDX file matching ${pattern}, found ` +
          `${matches.length ? matches.join(', ') : 'none'} (files there: ${files.join(', ') || 'none'})`,
      );
    }
    return join(folder, matches[0]);
  };
  const name = options.name ?? basename(folder);
  const p = IDX_FILE_PATTERNS;
  return makeTrainTest(
    loadIdxPair(find(p.trainImages), find(p.trainLabels), { ...options, name: `${name}/train` }),
    loadIdxPair(find(p.testImages), find(p.testLabels), { ...options, name: `${name}/test` }),
  );
}

// ---------------------------------------------------------------------------------------------
// CSV

export interface CsvOptions extends UserDataOptions {
  /** Where the label is when no header names a `label` column. Default 'first'. */
  labelColumn?: 'first' | 'last';
  /** Image shape of the features; default a square grey image when the count is a square, else 1×F. */
  height?: number;
  width?: number;
  channels?: number;
  /** Multiplies every feature, e.g. 1/255 for 0..255 pixels. Default 1 (normalisation copes). */
  scale?: number;
}

/**
 * One sample per line: a label and its features, comma separated (no quoting). A first line
 * whose features are not numbers is a header; a header column named `label` holds the labels.
 * Labels that are all non-negative integers are class indices; otherwise they are class names,
 * indexed in sorted order. Files ending in `.gz` are gunzipped.
 */
export function loadCsv(path: string, options: CsvOptions = {}): ImageDataset {
  let text: string;
  try {
    const bytes = readFileSync(path);
    text = (path.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
  } catch (error) {
    throw new Error(`cannot read CSV file '${path}': ${(error as Error).message}`, { cause: error });
  }
  const lines = text.split(/\r?\n/);
  const firstLine = lines.findIndex((line) => line.trim() !== '');
  if (firstLine < 0) throw new Error(`CSV file '${path}' is empty`);

  const isNumber = (field: string): boolean => field.trim() !== '' && Number.isFinite(Number(field));
  const first = lines[firstLine].split(',');
  const namedLabel = first.findIndex((field) => field.trim().toLowerCase() === 'label');
  const labelIndex = namedLabel >= 0 ? namedLabel : options.labelColumn === 'last' ? first.length - 1 : 0;
  const hasHeader = namedLabel >= 0 || first.some((field, j) => j !== labelIndex && !isNumber(field));
  const columns = first.length;
  const featureCount = columns - 1;
  if (featureCount < 1)
    throw new Error(`${path}:${firstLine + 1}: need a label and at least one feature column`);

  const rows: number[] = [];
  for (let i = hasHeader ? firstLine + 1 : firstLine; i < lines.length; i++) {
    if (lines[i].trim() !== '') rows.push(i);
  }
  const n = rows.length;
  const scale = options.scale ?? 1;
  const features = new Float32Array(n * featureCount);
  const rawLabels: string[] = new Array(n);
  rows.forEach((lineIndex, row) => {
    const fields = lines[lineIndex].split(',');
    if (fields.length !== columns) {
      throw new Error(
        `${path}:${lineIndex + 1}: expected ${columns} columns like line ${firstLine + 1}, found ${fields.length}`,
      );
    }
    let k = row * featureCount;
    fields.forEach((field, j) => {
      if (j === labelIndex) {
        rawLabels[row] = field.trim();
      } else if (isNumber(field)) {
        features[k++] = Number(field) * scale;
      } else {
        throw new Error(`${path}:${lineIndex + 1}, column ${j + 1}: '${field}' is not a number`);
      }
    });
  });

  const { labels, classNames } = labelsFromStrings(rawLabels, options.classNames, (row, why) => {
    throw new Error(`${path}:${rows[row] + 1}: ${why}`);
  });
  const shape = csvImageShape(featureCount, options, path);
  return checkDataset({
    name: options.name ?? basename(path).replace(/\.csv(\.gz)?$/i, ''),
    images: features,
    labels,
    n,
    ...shape,
    numClasses: classNames?.length ?? maxPlusOne(labels),
    classNames,
  });
}

function labelsFromStrings(
  raw: string[],
  knownNames: string[] | undefined,
  fail: (row: number, why: string) => never,
): { labels: Int32Array; classNames?: string[] } {
  const isIndex = (label: string): boolean => /^\d+$/.test(label);
  if (!knownNames && raw.every(isIndex)) return { labels: Int32Array.from(raw, Number) };
  const classNames = knownNames ?? [...new Set(raw)].sort();
  const indexOf = new Map(classNames.map((name, i) => [name, i]));
  const labels = new Int32Array(raw.length);
  raw.forEach((label, row) => {
    const index = indexOf.get(label);
    if (index === undefined) fail(row, `label '${label}' is not one of the classes ${classNames.join(', ')}`);
    labels[row] = index;
  });
  return { labels, classNames };
}

function csvImageShape(
  featureCount: number,
  options: CsvOptions,
  path: string,
): { height: number; width: number; channels: number } {
  const channels = options.channels ?? 1;
  const side = Math.round(Math.sqrt(featureCount / channels));
  const square = side * side * channels === featureCount;
  const height = options.height ?? (square ? side : 1);
  const width = options.width ?? (square ? side : featureCount / channels);
  if (height * width * channels !== featureCount) {
    throw new Error(
      `CSV file '${path}' has ${featureCount} features per row, which is not ` +
        `height×width×channels = ${height}×${width}×${channels}`,
    );
  }
  return { height, width, channels };
}

// ---------------------------------------------------------------------------------------------
// Image folder

export interface ImageFolderOptions extends UserDataOptions {
  /** Force grey (1) or colour (3); by default colour when any image is colour. */
  channels?: 1 | 3;
}

const UNSUPPORTED_IMAGES = ['.jpg', '.jpeg', '.gif', '.bmp', '.webp', '.tif', '.tiff'];

/**
 * `root/<class>/*.png|*.pgm|*.ppm`: one subfolder per class, classes indexed in sorted name order.
 * Every image must have the size of the first.
 */
export function loadImageFolder(root: string, options: ImageFolderOptions = {}): ImageDataset {
  if (!existsSync(root) || !statSync(root).isDirectory())
    throw new Error(`image folder '${root}' does not exist`);
  const folders = readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
    .map((entry) => entry.name)
    .sort();
  const classNames = options.classNames ?? folders;
  for (const folder of folders) {
    if (!classNames.includes(folder)) {
      throw new Error(
        `image folder '${join(root, folder)}': class '${folder}' is not one of ${classNames.join(', ')}`,
      );
    }
  }

  const files: { path: string; label: number }[] = [];
  for (const folder of folders) {
    for (const file of readdirSync(join(root, folder)).sort()) {
      const path = join(root, folder, file);
      const extension = extname(file).toLowerCase();
      if (UNSUPPORTED_IMAGES.includes(extension)) {
        throw new Error(
          `'${path}': ${extension} images are not supported; convert to ${IMAGE_EXTENSIONS.join(', ')}`,
        );
      }
      if (IMAGE_EXTENSIONS.includes(extension)) files.push({ path, label: classNames.indexOf(folder) });
    }
  }
  if (files.length === 0) {
    throw new Error(
      `image folder '${root}' has no images: expected ${join(root, '<class>', '*.png')} (or .pgm, .ppm); ` +
        `subfolders found: ${folders.join(', ') || 'none'}`,
    );
  }

  const decoded: DecodedImage[] = files.map(({ path }) => readImageFile(path));
  const { height, width } = decoded[0];
  const channels = options.channels ?? (decoded.some((image) => image.channels === 3) ? 3 : 1);
  const size = height * width * channels;
  const images = new Float32Array(files.length * size);
  decoded.forEach((image, i) => {
    if (image.height !== height || image.width !== width) {
      throw new Error(
        `'${files[i].path}' is ${image.width}×${image.height} but '${files[0].path}' is ${width}×${height}; ` +
          'every image of a dataset must have the same size',
      );
    }
    images.set(convertChannels(image, channels), i * size);
  });
  return checkDataset({
    name: options.name ?? basename(root),
    images,
    labels: Int32Array.from(files, (file) => file.label),
    n: files.length,
    height,
    width,
    channels,
    numClasses: classNames.length,
    classNames,
  });
}

/** Grey to colour repeats the value; colour to grey takes the luma of ITU-R BT.601. */
function convertChannels(image: DecodedImage, channels: 1 | 3): Float32Array {
  if (image.channels === channels) return image.pixels;
  const count = image.width * image.height;
  const out = new Float32Array(count * channels);
  const p = image.pixels;
  for (let i = 0; i < count; i++) {
    if (channels === 3) out.fill(p[i], i * 3, i * 3 + 3);
    else out[i] = 0.299 * p[i * 3] + 0.587 * p[i * 3 + 1] + 0.114 * p[i * 3 + 2];
  }
  return out;
}

function maxPlusOne(labels: Int32Array): number {
  let max = -1;
  for (const label of labels) max = Math.max(max, label);
  return max + 1;
}
