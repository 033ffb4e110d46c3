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
  /** Opacity per pixel in [0, 1], when the file has transparency (a PNG with an alpha channel). */
  alpha?: Float32Array;
}

const latin1 = new TextDecoder('latin1');

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.pgm', '.ppm'];

/** The format the bytes say they are (a PNG named .jpg is a PNG), by their magic numbers. */
function sniff(bytes: Uint8Array): 'png' | 'jpeg' | 'netpbm' | undefined {
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes[0] === 0x50 && [0x32, 0x33, 0x35, 0x36].includes(bytes[1])) return 'netpbm';
  return undefined;
}

/** What the first bytes of a file that is no image look like, for the message. */
function describe(bytes: Uint8Array, extension: string): string {
  if (bytes.length === 0) return 'the file is empty';
  const head = latin1.decode(bytes.subarray(0, 64)).trimStart().toLowerCase();
  if (head.startsWith('<!doctype html') || head.startsWith('<html')) return 'it is an HTML page';
  if (head.startsWith('gif8')) return 'it is a GIF; convert it to PNG';
  if (head.startsWith('riff') && head.slice(8, 12) === 'webp') return 'it is a WebP image; convert it to PNG';
  if (head.startsWith('<svg') || head.startsWith('<?xml')) return 'it is SVG/XML text; render it to PNG';
  const hex = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return `it starts with bytes ${hex}${extension ? `, not the ${extension} signature` : ''}`;
}

/**
 * Decodes an image file by its content (the extension is only a hint): PNG, JPEG, PGM or PPM. A
 * PNG's transparency is kept as `alpha` (predict composites it onto the training background).
 */
export function readImageFile(path: string): DecodedImage {
  const extension = extname(path).toLowerCase();
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${path}: no such file`, { cause: error });
    if (code === 'EISDIR') throw new Error(`${path} is a folder, not an image file`, { cause: error });
    throw new Error(`${path} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  const format = sniff(bytes);
  if (format === 'png') return decodePng(bytes, path);
  if (format === 'jpeg') return decodeJpeg(bytes, path);
  if (format === 'netpbm') return parseNetpbm(bytes, path);
  throw new Error(
    `${path} is not a PNG/JPEG image (${describe(bytes, extension)}); PGM and PPM are read too`,
  );
}

/** Baseline and progressive JPEG; jpeg-js gives 8-bit RGBA. Grey when every pixel has R = G = B. */
export function decodeJpeg(bytes: Uint8Array, source = 'JPEG data'): DecodedImage {
  let image;
  try {
    // A cap on the decoded size keeps a hostile file from exhausting memory (jpeg-js's own guard).
    image = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
  } catch (error) {
    throw new Error(`${source} is not a PNG/JPEG image (broken JPEG data: ${(error as Error).message})`, {
      cause: error,
    });
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

/** PNG of any colour type and depth; pngjs gives 8-bit RGBA. Transparency is kept as `alpha`. */
export function decodePng(bytes: Buffer, source = 'PNG data'): DecodedImage {
  let png;
  try {
    png = PNG.sync.read(bytes);
  } catch (error) {
    throw new Error(`${source} is not a PNG/JPEG image (broken PNG data: ${(error as Error).message})`, {
      cause: error,
    });
  }
  const { width, height, data } = png;
  const channels = png.color ? 3 : 1;
  const pixels = new Float32Array(width * height * channels);
  let transparent = false;
  for (let p = 0; p < width * height; p++) {
    for (let k = 0; k < channels; k++) pixels[p * channels + k] = data[p * 4 + k] / 255;
    if (data[p * 4 + 3] !== 255) transparent = true;
  }
  if (!transparent) return { width, height, channels, pixels };
  const alpha = Float32Array.from({ length: width * height }, (_, p) => data[p * 4 + 3] / 255);
  return { width, height, channels, pixels, alpha };
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
