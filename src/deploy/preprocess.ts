/**
 * Raw inputs to model inputs, with the preprocessing the checkpoint carries: an image of any size
 * and channel count (a canvas's RGBA ImageData, a decoded file, 0..255 or 0..1 values) becomes the
 * model's H×W×C, normalised; a row of features (an array, or values by feature name) is
 * normalised per feature. Browser-safe.
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
);

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

/** One raw example to the model's normalised [H·W·C] values; `where` names it in errors. */
export function prepareInput(
  input: RawInput,
  shape: InputShape,
  pre: Preprocess | undefined,
  where = 'input',
): Float32Array {
  const x = isImage(input) ? prepareImage(input, shape, where) : prepareRow(input, shape, pre, where);
  return normalise(x, shape.channels, pre, where);
}

function prepareImage(raw: RawImage, shape: InputShape, where: string): Float32Array {
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
  // Integer pixel arrays hold 0..255; float arrays are taken as already in [0, 1], as loaders give.
  const integer = !(img.data instanceof Float32Array || img.data instanceof Float64Array);
  const scale = integer ? 1 / 255 : 1;
  const values = new Float32Array(img.data.length);
  for (let i = 0; i < values.length; i++) values[i] = img.data[i] * scale;
  const converted = convertChannels(values, count, channels, shape.channels as 1 | 3);
  return resizeArea(converted, img.height, img.width, shape.channels, shape.height, shape.width);
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
  >,
): Preprocess {
  return {
    ...(ds.normalisation ? { mean: ds.normalisation.mean, std: ds.normalisation.std } : {}),
    ...(ds.features
      ? { features: ds.features }
      : { image: { height: ds.height, width: ds.width, channels: ds.channels } }),
    classes: ds.classNames ?? Array.from({ length: ds.numClasses }, (_, i) => String(i)),
  };
}
