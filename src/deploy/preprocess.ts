/**
 * Raw inputs to model inputs, with the preprocessing the checkpoint carries: an image of any size
 * and channel count (a canvas's RGBA ImageData, a decoded file, 0..255 or 0..1 values) becomes the
 * model's H×W×C, normalised; a row of features (an array, or values by feature name) is
 * normalised per feature. Browser-safe.
 *
 * Ordinary images are made to look like the training images: transparency is composited onto the
 * training background, and an image whose background has the opposite tone (dark strokes on
 * white, for a model trained on MNIST's white on black) is inverted, with a note saying so.
 */
import type { CheckpointMeta, Preprocess } from '../io/checkpoint_codec.js';
import { convertChannels, resizeArea } from '../data/resize.js';
import type { ImageDataset } from '../data/dataset.js';

/**
 * An image as pixels: ImageData from a canvas fits (RGBA, 0..255), and so does a decoded file
 * (`readImageFile` gives `pixels` in [0, 1]).
 */
export type RawImage = {
  width: number;
  height: number;
  /** 1, 3 or 4 (RGBA); inferred from the pixel count when absent. */
  channels?: number;
} & (
  | {
      /** Row-major [height, width, channels]; integers 0..255 (Uint8 arrays) or floats in [0, 1]. */ data: ArrayLike<number>;
    }
  | { pixels: ArrayLike<number> }
) & {
    /** Opacity per pixel in [0, 1] (a decoded PNG with transparency has it); RGBA data carries its own. */
    alpha?: ArrayLike<number>;
  };

/** How an image is fitted to the training images. */
export interface ImageOptions {
  /**
   * Invert an image whose background has the opposite tone of the training images' (default true).
   * Only where the training background is clearly dark or light (MNIST-like data).
   */
  matchPolarity?: boolean;
}

interface RawImageFields {
  width: number;
  height: number;
  data: ArrayLike<number>;
  /** 1, 3 or 4 (RGBA); inferred from data.length when absent. */
  channels?: number;
}

/** One example: an image, a feature row in the checkpoint's feature order, or features by name. */
export type RawInput = RawImage | ArrayLike<number> | Readonly<Record<string, number>>;

export interface InputShape {
  height: number;
  width: number;
  channels: number;
}

/**
 * The model's input shape: from the preprocessing when the checkpoint has it, else from the
 * architecture (images square, a non-square MLP input a feature row).
 */
export function inputShapeOf(meta: Pick<CheckpointMeta, 'model' | 'preprocess'>): InputShape {
  const pre = meta.preprocess;
  if (pre?.image) return pre.image;
  if (pre?.features) return { height: 1, width: 1, channels: pre.features.length };
  const spec = meta.model;
  switch (spec.family) {
    case 'resnet':
    case 'mobilenetv2':
      return {
        height: spec.config.imageSize,
        width: spec.config.imageSize,
        channels: spec.config.inChannels,
      };
    case 'mlp': {
      const side = Math.round(Math.sqrt(spec.config.inputs));
      return side * side === spec.config.inputs
        ? { height: side, width: side, channels: 1 }
        : { height: 1, width: 1, channels: spec.config.inputs };
    }
    default:
      throw new Error(
        `predict: a ${spec.family} model takes tokens, not images or features; use generate() for language models`,
      );
  }
}

const isImage = (x: RawInput): x is RawImage =>
  typeof (x as RawImage).width === 'number' &&
  typeof (x as RawImage).height === 'number' &&
  ('data' in x || 'pixels' in x);

const isRow = (x: RawInput): x is ArrayLike<number> => typeof (x as ArrayLike<number>).length === 'number';

/** True for a tabular model: one feature per channel of a 1×1 input. */
export const isTabular = (shape: InputShape): boolean => shape.height === 1 && shape.width === 1;

/**
 * One raw example to the model's normalised [H·W·C] values; `where` names it in errors; what was
 * done to fit an image to the training images (inverted, composited) is pushed onto `notes`.
 */
export function prepareInput(
  input: RawInput,
  shape: InputShape,
  pre: Preprocess | undefined,
  where = 'input',
  options: ImageOptions & { notes?: string[] } = {},
): Float32Array {
  const x = isImage(input)
    ? prepareImage(input, shape, where, pre, options)
    : prepareRow(input, shape, pre, where);
  return normalise(x, shape.channels, pre, where);
}

/**
 * The training images' background tone in [0, 1]: as recorded at training, else (older checkpoints)
 * 0 or 1 from a grey dataset's mean well off 0.5. Undefined when neither says (photos, tables).
 */
export function trainingBackground(pre: Preprocess | undefined): number | undefined {
  if (pre?.background?.length) return pre.background.reduce((a, b) => a + b, 0) / pre.background.length;
  const mean = pre?.image?.channels === 1 ? pre.mean?.[0] : undefined;
  return mean === undefined ? undefined : mean < 0.35 ? 0 : mean > 0.65 ? 1 : undefined;
}

/** A clearly dark (0) or light (1) background, else undefined. */
const tone = (v: number | undefined) =>
  v === undefined ? undefined : v < 0.35 ? 0 : v > 0.65 ? 1 : undefined;

function prepareImage(
  raw: RawImage,
  shape: InputShape,
  where: string,
  pre: Preprocess | undefined,
  options: ImageOptions & { notes?: string[] },
): Float32Array {
  // Fields read one by one: ImageData's are getters, which a spread would drop.
  const img: RawImageFields = {
    width: raw.width,
    height: raw.height,
    channels: raw.channels,
    data: 'data' in raw ? raw.data : raw.pixels,
  };
  const count = img.width * img.height;
  if (!(count > 0)) throw new Error(`${where}: image is ${img.width}×${img.height}`);
  const channels = img.channels ?? img.data.length / count;
  if (![1, 3, 4].includes(channels) || img.data.length !== count * channels) {
    throw new Error(
      `${where}: ${img.data.length} values do not make a ${img.width}×${img.height} image of 1, 3 or 4 channels`,
    );
  }
  if (shape.channels !== 1 && shape.channels !== 3) {
    throw new Error(`${where}: the model takes ${shape.channels} features per example, not an image`);
  }
  if (raw.alpha !== undefined && raw.alpha.length !== count) {
    throw new Error(`${where}: alpha has ${raw.alpha.length} values for ${img.width}×${img.height} pixels`);
  }
  // Integer pixel arrays hold 0..255; float arrays are taken as already in [0, 1], as loaders give.
  const integer = !(img.data instanceof Float32Array || img.data instanceof Float64Array);
  const scale = integer ? 1 / 255 : 1;
  const values = new Float32Array(img.data.length);
  for (let i = 0; i < values.length; i++) values[i] = img.data[i] * scale;
  const colour = channels === 4 ? 3 : channels;
  const alpha =
    channels === 4 ? Float32Array.from({ length: count }, (_, p) => values[p * 4 + 3]) : raw.alpha;
  const trained = tone(trainingBackground(pre));
  const notes = options.notes ?? [];
  let grey = convertChannels(values, count, channels, 1);
  if (alpha && hasTransparency(alpha)) {
    // Transparent pixels are background: the training one, unless the strokes themselves have its
    // tone (dark ink on a transparent page, MNIST-like model), which would hide them; then the
    // opposite, and polarity matching below turns the image round.
    const ink = inkTone(grey, alpha);
    const onto =
      trained === undefined ? 0 : ink !== undefined && tone(ink) === trained ? 1 - trained : trained;
    compositeInPlace(values, colour, channels, alpha, onto);
    notes.push(`transparency composited onto ${onto === 0 ? 'black' : 'white'}`);
  }
  const pixels = channels === 4 ? dropAlpha(values, count) : values;
  grey = convertChannels(pixels, count, colour, 1);
  const bg = tone(borderMedian(grey, img.height, img.width));
  if (options.matchPolarity !== false && trained !== undefined && bg !== undefined && bg !== trained) {
    for (let i = 0; i < pixels.length; i++) pixels[i] = 1 - pixels[i];
    notes.push(
      `inverted: the image has a ${bg ? 'light' : 'dark'} background, the model was trained on ${trained ? 'light' : 'dark'} ones (matchPolarity: false / --no-match-polarity keeps it)`,
    );
  }
  const converted = convertChannels(pixels, count, colour, shape.channels as 1 | 3);
  return resizeArea(converted, img.height, img.width, shape.channels, shape.height, shape.width);
}

const hasTransparency = (alpha: ArrayLike<number>) => {
  for (let p = 0; p < alpha.length; p++) if (alpha[p] < 0.99) return true;
  return false;
};

/** The mean grey of the clearly opaque pixels (the strokes of a drawing on a transparent page). */
function inkTone(grey: Float32Array, alpha: ArrayLike<number>): number | undefined {
  let sum = 0;
  let n = 0;
  for (let p = 0; p < grey.length; p++) {
    if (alpha[p] > 0.5) {
      sum += grey[p];
      n++;
    }
  }
  return n ? sum / n : undefined;
}

/** In place: colour ← α·colour + (1 − α)·background, for `colour` channels of a `stride`-channel image. */
function compositeInPlace(
  values: Float32Array,
  colour: number,
  stride: number,
  alpha: ArrayLike<number>,
  background: number,
): void {
  for (let p = 0; p < alpha.length; p++) {
    const a = alpha[p];
    for (let k = 0; k < colour; k++)
      values[p * stride + k] = a * values[p * stride + k] + (1 - a) * background;
  }
}

function dropAlpha(rgba: Float32Array, count: number): Float32Array {
  const out = new Float32Array(count * 3);
  for (let p = 0; p < count; p++) out.set(rgba.subarray(p * 4, p * 4 + 3), p * 3);
  return out;
}

/** The median of an H×W grey image's outermost pixels: its background tone. */
export function borderMedian(grey: ArrayLike<number>, height: number, width: number): number {
  const border: number[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (y === 0 || x === 0 || y === height - 1 || x === width - 1) border.push(grey[y * width + x]);
    }
  }
  border.sort((a, b) => a - b);
  return border[Math.floor(border.length / 2)];
}

function prepareRow(
  input: ArrayLike<number> | Readonly<Record<string, number>>,
  shape: InputShape,
  pre: Preprocess | undefined,
  where: string,
): Float32Array {
  const size = shape.height * shape.width * shape.channels;
  let row: ArrayLike<number>;
  if (isRow(input)) {
    row = input;
  } else {
    const names = pre?.features;
    if (!names) throw new Error(`${where}: features by name need a checkpoint that records feature names`);
    const unknown = Object.keys(input).filter((k) => !names.includes(k));
    if (unknown.length)
      throw new Error(
        `${where}: unknown feature(s) ${unknown.join(', ')}; the model takes ${names.join(', ')}`,
      );
    row = names.map((name) => {
      const v = input[name];
      if (v === undefined) throw new Error(`${where}: feature '${name}' is missing`);
      return v;
    });
  }
  if (row.length !== size) {
    throw new Error(
      `${where}: ${row.length} values, the model takes ${size}` +
        (pre?.features
          ? ` (${pre.features.join(', ')})`
          : ` (${shape.height}×${shape.width}×${shape.channels})`),
    );
  }
  const out = Float32Array.from(row);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) {
      const name = pre?.features?.[i] ?? `value ${i}`;
      throw new Error(`${where}: ${name} is ${row[i]}, not a finite number`);
    }
  }
  return out;
}

/** (x - mean) / std per channel, with the training set's statistics. */
function normalise(
  x: Float32Array,
  channels: number,
  pre: Preprocess | undefined,
  where: string,
): Float32Array {
  if (!pre?.mean || !pre.std) return x;
  if (pre.mean.length !== channels || pre.std.length !== channels) {
    throw new Error(
      `${where}: the checkpoint's normalisation has ${pre.mean.length} channels, the input ${channels}`,
    );
  }
  return standardise(x, pre.mean, pre.std);
}

/** In place: x[i] ← (x[i] − mean[i mod n]) / std[i mod n], n statistics per channel or per feature. */
export function standardise(x: Float32Array, mean: readonly number[], std: readonly number[]): Float32Array {
  const n = mean.length;
  for (let i = 0; i < x.length; i++) x[i] = (x[i] - mean[i % n]) / std[i % n];
  return x;
}

/** The preprocessing a checkpoint records for a training set (its normalisation, shape and classes). */
export function preprocessOf(
  ds: Pick<
    ImageDataset,
    'height' | 'width' | 'channels' | 'numClasses' | 'classNames' | 'features' | 'normalisation'
  > &
    Partial<Pick<ImageDataset, 'images' | 'n'>>,
): Preprocess {
  const background = ds.features ? undefined : backgroundOf(ds);
  return {
    ...(ds.normalisation ? { mean: ds.normalisation.mean, std: ds.normalisation.std } : {}),
    ...(ds.features
      ? { features: ds.features }
      : { image: { height: ds.height, width: ds.width, channels: ds.channels } }),
    ...(background ? { background } : {}),
    classes: ds.classNames ?? Array.from({ length: ds.numClasses }, (_, i) => String(i)),
  };
}

/** Per channel, the median border pixel of (up to 256 of) the training images, in [0, 1]. */
function backgroundOf(
  ds: Partial<Pick<ImageDataset, 'images' | 'n' | 'normalisation'>> &
    Pick<ImageDataset, 'height' | 'width' | 'channels'>,
): number[] | undefined {
  const { images, n, height, width, channels } = ds;
  if (!images || !n || height < 3 || width < 3) return undefined;
  const size = height * width * channels;
  const take = Math.min(n, 256);
  const out: number[] = [];
  for (let k = 0; k < channels; k++) {
    const mean = ds.normalisation?.mean[k] ?? 0;
    const std = ds.normalisation?.std[k] ?? 1;
    const medians: number[] = [];
    const plane = new Float32Array(height * width);
    for (let i = 0; i < take; i++) {
      // Stored images are normalised when the dataset is: back to [0, 1] pixels.
      for (let p = 0; p < height * width; p++) plane[p] = images[i * size + p * channels + k] * std + mean;
      medians.push(borderMedian(plane, height, width));
    }
    medians.sort((a, b) => a - b);
    out.push(Math.round(medians[Math.floor(medians.length / 2)] * 1000) / 1000);
  }
  return out;
}
