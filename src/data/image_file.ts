/**
 * Decodes one image file: PNG through pngjs, JPEG through jpeg-js, PGM/PPM (Netpbm) by hand since
 * the format is a short text header followed by the pixels.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';

export interface DecodedImage {
  width: number;
  height: number;
  /** 1 for grey, 3 for colour. */
  channels: 1 | 3;
  /** [height, width, channels] row-major, scaled to [0, 1]. */
  pixels: Float32Array;
}

const latin1 = new TextDecoder('latin1');

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.pgm', '.ppm'];

export function readImageFile(path: string): DecodedImage {
  const extension = extname(path).toLowerCase();
  if (!IMAGE_EXTENSIONS.includes(extension)) {
    throw new Error(`'${path}': unsupported image type '${extension}'; use ${IMAGE_EXTENSIONS.join(', ')}`);
  }
  const bytes = readFileSync(path);
  if (extension === '.png') return decodePng(bytes, path);
  if (extension === '.jpg' || extension === '.jpeg') return decodeJpeg(bytes, path);
  return parseNetpbm(bytes, path);
}

/** Baseline and progressive JPEG; jpeg-js gives 8-bit RGBA. Grey when every pixel has R = G = B. */
export function decodeJpeg(bytes: Uint8Array, source = 'JPEG data'): DecodedImage {
  let image;
  try {
    // A cap on the decoded size keeps a hostile file from exhausting memory (jpeg-js's own guard).
    image = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
  } catch (error) {
    throw new Error(`'${source}' is not a readable JPEG: ${(error as Error).message}`, { cause: error });
  }
  const { width, height, data } = image;
  let grey = true;
  for (let p = 0; p < width * height && grey; p++) {
    grey = data[p * 4] === data[p * 4 + 1] && data[p * 4] === data[p * 4 + 2];
  }
  const channels = grey ? 1 : 3;
  const pixels = new Float32Array(width * height * channels);
  for (let p = 0; p < width * height; p++) {
    for (let k = 0; k < channels; k++) pixels[p * channels + k] = data[p * 4 + k] / 255;
  }
  return { width, height, channels, pixels };
}

/** PNG of any colour type and depth; pngjs gives 8-bit RGBA. Alpha is dropped. */
export function decodePng(bytes: Buffer, source = 'PNG data'): DecodedImage {
  let png;
  try {
    png = PNG.sync.read(bytes);
  } catch (error) {
    throw new Error(`'${source}' is not a readable PNG: ${(error as Error).message}`, { cause: error });
  }
  const { width, height, data } = png;
  const channels = png.color ? 3 : 1;
  const pixels = new Float32Array(width * height * channels);
  for (let p = 0; p < width * height; p++) {
    for (let k = 0; k < channels; k++) pixels[p * channels + k] = data[p * 4 + k] / 255;
  }
  return { width, height, channels, pixels };
}

/**
 * Netpbm grey (P2 text, P5 binary) and colour (P3 text, P6 binary) images, maxval up to 65535
 * (two big-endian bytes per sample above 255). Spec: https://netpbm.sourceforge.net/doc/pgm.html
 */
export function parseNetpbm(bytes: Uint8Array, source = 'Netpbm data'): DecodedImage {
  const fail = (why: string): Error => new Error(`'${source}' is not a valid PGM/PPM file: ${why}`);
  let position = 0;

  // Header tokens are separated by whitespace; '#' starts a comment that runs to the line end.
  const isSpace = (byte: number): boolean => byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
  const nextToken = (): string => {
    for (;;) {
      while (position < bytes.length && isSpace(bytes[position])) position++;
      if (bytes[position] !== 0x23) break;
      while (position < bytes.length && bytes[position] !== 0x0a) position++;
    }
    const start = position;
    while (position < bytes.length && !isSpace(bytes[position])) position++;
    if (start === position) throw fail('file ends inside the header or the pixels');
    return latin1.decode(bytes.subarray(start, position));
  };
  const nextNumber = (what: string): number => {
    const token = nextToken();
    const value = Number(token);
    if (!Number.isInteger(value) || value < 0) throw fail(`${what} '${token}' is not a non-negative integer`);
    return value;
  };

  const magic = nextToken();
  const formats: Record<string, { channels: 1 | 3; binary: boolean }> = {
    P2: { channels: 1, binary: false },
    P3: { channels: 3, binary: false },
    P5: { channels: 1, binary: true },
    P6: { channels: 3, binary: true },
  };
  const format = formats[magic];
  if (!format) throw fail(`magic '${magic.slice(0, 8)}' is not one of ${Object.keys(formats).join(', ')}`);
  const width = nextNumber('width');
  const height = nextNumber('height');
  const maxval = nextNumber('maxval');
  if (width === 0 || height === 0) throw fail(`size ${width}×${height} is empty`);
  if (maxval === 0 || maxval > 65535) throw fail(`maxval ${maxval} is outside 1..65535`);

  const { channels, binary } = format;
  const count = width * height * channels;
  const pixels = new Float32Array(count);
  if (binary) {
    position++; // exactly one whitespace byte separates maxval from the raster
    const bytesPerSample = maxval > 255 ? 2 : 1;
    const needed = count * bytesPerSample;
    if (bytes.length - position < needed) {
      throw fail(
        `${width}×${height}×${channels} needs ${needed} bytes of pixels, found ${bytes.length - position}`,
      );
    }
    for (let i = 0; i < count; i++) {
      const at = position + i * bytesPerSample;
      const value = bytesPerSample === 2 ? (bytes[at] << 8) | bytes[at + 1] : bytes[at];
      pixels[i] = value / maxval;
    }
  } else {
    for (let i = 0; i < count; i++) pixels[i] = Math.min(nextNumber(`pixel ${i}`), maxval) / maxval;
  }
  return { width, height, channels, pixels };
}
