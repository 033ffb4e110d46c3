/**
 * A user's own image dataset, from files: an IDX pair (the MNIST format), a CSV of labels and
 * pixel values, or a folder with one subfolder of images per class.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parse } from 'csv-parse/sync';
import { checkDataset, makeTrainTest, type ImageDataset, type TrainTest } from './dataset.js';
import { readIdx } from './idx.js';
import { IMAGE_EXTENSIONS, readImageFile, type DecodedImage } from './image_file.js';
import { convertChannels, resizeArea } from './resize.js';

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
  /**
   * The label column: a header name, a 0-based index (negative counts from the end), 'first' or
   * 'last'. Default: the header column named `label` (any case); a file without a header: the first.
   */
  labelColumn?: string | number;
  /** Field delimiter; by default the most frequent of `,` `;` tab on the first line. */
  delimiter?: string;
  /** Image shape of the features. Default: a square grey image when the count is a square ≥ 64, else a row of named features. */
  height?: number;
  width?: number;
  channels?: number;
  /** Multiplies every feature, e.g. 1/255 for 0..255 pixels. Default 1 (normalisation copes). */
  scale?: number;
}

/** A CSV file as rows of fields, through csv-parse (quoting, escaped quotes, BOM, CRLF). */
export interface CsvTable {
  path: string;
  /** The header row, when the first row names the columns. */
  header?: string[];
  rows: string[][];
  /** 1-based line of each row in the file, for messages. */
  lines: number[];
}

const isNumber = (field: string): boolean => field !== '' && !Number.isNaN(Number(field));

function sniffDelimiter(text: string): string {
  const line = text.split(/\r?\n/, 1)[0] ?? '';
  const counts = [',', ';', '\t'].map((d) => ({ d, n: line.split(d).length }));
  return counts.reduce((a, b) => (b.n > a.n ? b : a)).d;
}

/**
 * Reads a CSV file (gunzipped when it ends in .gz). The first row is a header when one of its
 * fields is text over a number in the row below; every row must have as many fields as the first.
 */
export function readCsvTable(path: string, options: Pick<CsvOptions, 'delimiter'> = {}): CsvTable {
  let text: string;
  try {
    const bytes = readFileSync(path);
    text = (path.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
  } catch (error) {
    throw new Error(`cannot read CSV file '${path}': ${(error as Error).message}`, { cause: error });
  }
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, {
      bom: true,
      delimiter: options.delimiter ?? sniffDelimiter(text.replace(/^\uFEFF/, '')),
      skip_empty_lines: true,
      trim: true,
      relax_column_count: true,
      info: true,
    }) as unknown as typeof records;
  } catch (error) {
    throw new Error(`CSV file '${path}' cannot be parsed: ${(error as Error).message}`, { cause: error });
  }
  if (records.length === 0) throw new Error(`CSV file '${path}' is empty`);
  const first = records[0].record;
  // A header names columns that hold numbers below it (csv.Sniffer's rule): a first row of text
  // over a text column (string labels) is data.
  const second = records[1]?.record;
  const hasHeader = first.some((field, j) => !isNumber(field) && (!second || isNumber(second[j] ?? '')));
  const body = hasHeader ? records.slice(1) : records;
  if (body.length === 0) {
    throw new Error(`CSV file '${path}' has a header (${first.join(', ')}) but no data rows`);
  }
  for (const { record, info } of body) {
    if (record.length !== first.length) {
      throw new Error(
        `${path}:${info.lines}: expected ${first.length} columns like line ${records[0].info.lines}, found ${record.length}`,
      );
    }
  }
  return {
    path,
    header: hasHeader ? first : undefined,
    rows: body.map((r) => r.record),
    lines: body.map((r) => r.info.lines),
  };
}

/** The index of the label column of a table; see CsvOptions.labelColumn. */
export function labelColumnIndex(table: CsvTable, labelColumn: string | number | undefined): number {
  const { header, path } = table;
  const columns = (header ?? table.rows[0] ?? []).length;
  const describe = header
    ? `columns: ${header.map((h, j) => `${j} '${h}'`).join(', ')}`
    : `${columns} columns`;
  if (labelColumn === 'first') return 0;
  if (labelColumn === 'last') return columns - 1;
  if (typeof labelColumn === 'number' || (typeof labelColumn === 'string' && /^-?\d+$/.test(labelColumn))) {
    const i = Number(labelColumn);
    const index = i < 0 ? columns + i : i;
    if (!(index >= 0 && index < columns))
      throw new Error(`${path}: label column ${labelColumn} is outside 0..${columns - 1} (${describe})`);
    return index;
  }
  if (!header) {
    if (labelColumn === undefined) return 0;
    throw new Error(
      `${path} has no header row, so no column is named '${labelColumn}': give the label column as an index (0 = first)`,
    );
  }
  const wanted = labelColumn ?? 'label';
  const exact = header.indexOf(wanted);
  const index = exact >= 0 ? exact : header.findIndex((h) => h.toLowerCase() === wanted.toLowerCase());
  if (index >= 0) return index;
  throw new Error(
    labelColumn === undefined
      ? `${path} has a header but no column named 'label': say which column holds the labels with --label-column NAME|INDEX (${describe})`
      : `${path} has no column named '${labelColumn}' (${describe})`,
  );
}

/** The name of column j: its header, else its position. */
export const columnName = (table: CsvTable, j: number): string => table.header?.[j] ?? `column ${j + 1}`;

/**
 * Parses the given columns of every row into float32 values, row-major; every cell must be a
 * finite number that float32 can hold, or the error names the file, line and column.
 */
export function csvColumns(table: CsvTable, columns: readonly number[], scale = 1): Float32Array {
  const count = columns.length;
  const values = new Float32Array(table.rows.length * count);
  table.rows.forEach((row, r) => {
    columns.forEach((j, k) => {
      const field = row[j];
      const v = Number(field) * scale;
      const where = () => `${table.path}:${table.lines[r]}, column ${j} '${columnName(table, j)}'`;
      if (!isNumber(field)) throw new Error(`${where()}: '${field}' is not a number`);
      if (!Number.isFinite(v)) throw new Error(`${where()}: ${field} is not a finite number`);
      if (!Number.isFinite(Math.fround(v))) {
        throw new Error(`${where()}: ${field} is outside the float32 range (±3.4e38)`);
      }
      values[r * count + k] = v;
    });
  });
  return values;
}

/** Every column but the label's (`skip`), with their names. */
export function csvFeatures(
  table: CsvTable,
  skip: number,
  scale = 1,
): { values: Float32Array; names: string[] } {
  const width = (table.header ?? table.rows[0]).length;
  const columns = Array.from({ length: width }, (_, j) => j).filter((j) => j !== skip);
  return { values: csvColumns(table, columns, scale), names: columns.map((j) => columnName(table, j)) };
}

/**
 * One sample per row: a label and its features. Labels that are all non-negative integers are
 * class indices; otherwise they are class names, indexed in sorted order. Features form a square
 * grey image when their count is a square ≥ 64 (or the shape given), else a row of named features
 * (1×1 with one channel per feature, so each is normalised on its own).
 */
export function loadCsv(path: string, options: CsvOptions = {}): ImageDataset {
  const table = readCsvTable(path, options);
  const labelIndex = labelColumnIndex(table, options.labelColumn);
  if ((table.header ?? table.rows[0]).length < 2) {
    throw new Error(`${path}: need a label and at least one feature column`);
  }
  const { values, names } = csvFeatures(table, labelIndex, options.scale);
  const rawLabels = table.rows.map((row, r) => {
    const label = row[labelIndex];
    if (label === '') throw new Error(`${path}:${table.lines[r]}: the label (column ${labelIndex}) is empty`);
    return label;
  });
  const { labels, classNames } = labelsFromStrings(rawLabels, options.classNames, (row, why) => {
    throw new Error(`${path}:${table.lines[row]}: ${why}`);
  });
  const shape = csvShape(names.length, options, path);
  return checkDataset({
    name: options.name ?? basename(path).replace(/\.csv(\.gz)?$/i, ''),
    images: values,
    labels,
    n: table.rows.length,
    ...shape,
    numClasses: classNames?.length ?? maxPlusOne(labels),
    classNames,
    ...(shape.height === 1 && shape.width === 1 && shape.channels > 1 ? { features: names } : {}),
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

function csvShape(
  featureCount: number,
  options: CsvOptions,
  path: string,
): { height: number; width: number; channels: number } {
  if (options.height === undefined && options.width === undefined && options.channels === undefined) {
    const side = Math.round(Math.sqrt(featureCount));
    if (featureCount >= 64 && side * side === featureCount) return { height: side, width: side, channels: 1 };
    return { height: 1, width: 1, channels: featureCount };
  }
  const channels = options.channels ?? 1;
  const side = Math.round(Math.sqrt(featureCount / channels));
  const height = options.height ?? side;
  const width = options.width ?? featureCount / channels / height;
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
  /** Size every image is resized to; default the size of the first image. */
  height?: number;
  width?: number;
}

const UNSUPPORTED_IMAGES = ['.gif', '.bmp', '.webp', '.tif', '.tiff'];

/**
 * `root/<class>/*.png|*.jpg|*.pgm|*.ppm`: one subfolder per class, classes indexed in sorted name
 * order. Images of another size than the first (or than height × width) are resized to it.
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
  const height = options.height ?? decoded[0].height;
  const width = options.width ?? decoded[0].width;
  const channels = options.channels ?? (decoded.some((image) => image.channels === 3) ? 3 : 1);
  const size = height * width * channels;
  const images = new Float32Array(files.length * size);
  decoded.forEach((image, i) => {
    const converted = convertChannels(image.pixels, image.width * image.height, image.channels, channels);
    images.set(resizeArea(converted, image.height, image.width, channels, height, width), i * size);
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

function maxPlusOne(labels: Int32Array): number {
  let max = -1;
  for (const label of labels) max = Math.max(max, label);
  return max + 1;
}
