/**
 * Seeded data augmentation on single HWC images: the random crop and horizontal flip of the
 * standard CIFAR/ResNet recipe (He et al. 2016, §4.2: "4 pixels are padded on each side, and a
 * 32×32 crop is randomly sampled from the padded image or its horizontal flip").
 */
import type { Rng } from './random.js';

export interface ImageShape {
  height: number;
  width: number;
  channels: number;
}

export interface AugmentOptions {
  /** Pad each side with this many zero pixels, then crop a random height×width window. 0 = off. */
  cropPadding?: number;
  /** Mirror left-right with probability 1/2. Off by default: it changes the meaning of digits. */
  horizontalFlip?: boolean;
}

/**
 * Zero-pads each side by `padding` pixels and crops back to the original size at a random
 * offset. After normalisation zero is the mean pixel, so the padding reads as "no information".
 */
export function randomCrop(image: Float32Array, shape: ImageShape, padding: number, rng: Rng): Float32Array {
  if (!Number.isInteger(padding) || padding < 0) {
    throw new Error(`randomCrop: padding must be a non-negative integer, got ${padding}`);
  }
  if (padding === 0) return image.slice();
  const { height, width, channels } = shape;
  // Offset of the crop window inside the padded image, minus the padding: the shift applied.
  const dy = rng.int(2 * padding + 1) - padding;
  const dx = rng.int(2 * padding + 1) - padding;
  const out = new Float32Array(image.length);
  for (let y = 0; y < height; y++) {
    const sourceY = y + dy;
    if (sourceY < 0 || sourceY >= height) continue;
    const x0 = Math.max(0, -dx);
    const x1 = Math.min(width, width - dx);
    if (x1 <= x0) continue;
    const from = (sourceY * width + x0 + dx) * channels;
    out.set(image.subarray(from, from + (x1 - x0) * channels), (y * width + x0) * channels);
  }
  return out;
}

/** Mirrors an image left-right. */
export function horizontalFlip(image: Float32Array, shape: ImageShape): Float32Array {
  const { height, width, channels } = shape;
  const out = new Float32Array(image.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = (y * width + x) * channels;
      out.set(image.subarray(from, from + channels), (y * width + width - 1 - x) * channels);
    }
  }
  return out;
}

/** Applies the augmentations `options` turns on, drawing their randomness from `rng`. */
export function augmentImage(
  image: Float32Array,
  shape: ImageShape,
  options: AugmentOptions,
  rng: Rng,
): Float32Array {
  let out = options.cropPadding ? randomCrop(image, shape, options.cropPadding, rng) : image;
  if (options.horizontalFlip && rng.next() < 0.5) out = horizontalFlip(out, shape);
  return out;
}
