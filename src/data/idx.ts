/**
 * The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"):
 * bytes 0-1 zero, byte 2 the element type, byte 3 the number of dimensions n, then n big-endian
 * uint32 sizes, then the elements, big-endian, row-major.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export type IdxElements = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  /** Sizes of the dimensions, outermost first: [N, H, W] for a file of images. */
  dims: number[];
  data: IdxElements;
}

interface IdxType {
  name: string;
  bytes: number;
  read(view: DataView, offset: number): number;
  create(length: number): IdxElements;
}

const IDX_TYPES: Record<number, IdxType> = {
  0x08: { name: 'uint8', bytes: 1, read: (v, o) => v.getUint8(o), create: (n) => new Uint8Array(n) },
  0x09: { name: 'int8', bytes: 1, read: (v, o) => v.getInt8(o), create: (n) => new Int8Array(n) },
  0x0b: { name: 'int16', bytes: 2, read: (v, o) => v.getInt16(o), create: (n) => new Int16Array(n) },
  0x0c: { name: 'int32', bytes: 4, read: (v, o) => v.getInt32(o), create: (n) => new Int32Array(n) },
  0x0d: { name: 'float32', bytes: 4, read: (v, o) => v.getFloat32(o), create: (n) => new Float32Array(n) },
  0x0e: { name: 'float64', bytes: 8, read: (v, o) => v.getFloat64(o), create: (n) => new Float64Array(n) },
};

const GZIP_MAGIC = [0x1f, 0x8b];

/** Reads an IDX file, gunzipping it first when it is gzipped (by name or by content). */
export function readIdx(path: string): IdxArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new Error(`cannot read IDX file '${path}': ${(error as Error).message}`, { cause: error });
  }
  if (path.endsWith('.gz') || (bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1])) {
    try {
      bytes = gunzipSync(bytes);
    } catch (error) {
      throw new Error(`IDX file '${path}' is not valid gzip: ${(error as Error).message}`, { cause: error });
    }
  }
  return parseIdx(bytes, path);
}

/** Parses IDX bytes; `source` names the file in error messages. uint8 data is a view on `bytes`. */
export function parseIdx(bytes: Uint8Array, source = 'IDX data'): IdxArray {
  function fail(why: string): never {
    throw new Error(`'${source}' is not a valid IDX file: ${why}`);
  }
  if (bytes.length < 4) fail(`only ${bytes.length} bytes, the header alone needs at least 4`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    fail(`magic must start with bytes 00 00, found ${hex(bytes[0])} ${hex(bytes[1])}`);
  }
  const type = IDX_TYPES[bytes[2]];
  if (!type) fail(`unknown element type ${hex(bytes[2])}; known: ${knownTypes()}`);
  const rank = bytes[3];
  if (rank === 0) fail('number of dimensions is 0');
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes)
    fail(`${rank} dimensions need a ${headerBytes}-byte header, file has ${bytes.length} bytes`);

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i));
  const length = dims.reduce((a, b) => a * b, 1);
  const expected = length * type.bytes;
  const actual = bytes.length - headerBytes;
  if (actual !== expected) {
    fail(
      `header says ${dims.join('×')} ${type.name} = ${expected} bytes of data, file has ${actual} ` +
        `(truncated download, or not IDX)`,
    );
  }

  let data: IdxElements;
  if (bytes[2] === 0x08) {
    data = bytes.subarray(headerBytes); // the common case: a view, no copy
  } else {
    data = type.create(length);
    for (let i = 0; i < length; i++) data[i] = type.read(view, headerBytes + i * type.bytes);
  }
  return { dims, data };
}

/** Encodes uint8 data as IDX bytes: the inverse of `parseIdx` for the type MNIST uses. */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Uint8Array {
  const length = dims.reduce((a, b) => a * b, 1);
  if (length !== data.length) {
    throw new Error(`encodeIdx: dims ${dims.join('×')} hold ${length} elements, data has ${data.length}`);
  }
  if (dims.length === 0 || dims.length > 255)
    throw new Error(`encodeIdx: need 1..255 dims, got ${dims.length}`);
  const headerBytes = 4 + 4 * dims.length;
  const bytes = new Uint8Array(headerBytes + length);
  const view = new DataView(bytes.buffer);
  bytes[2] = 0x08;
  bytes[3] = dims.length;
  dims.forEach((size, i) => view.setUint32(4 + 4 * i, size));
  bytes.set(data, headerBytes);
  return bytes;
}

function hex(byte: number | undefined): string {
  return byte === undefined ? '(none)' : '0x' + byte.toString(16).padStart(2, '0');
}

function knownTypes(): string {
  return Object.entries(IDX_TYPES)
    .map(([code, t]) => `${hex(Number(code))} ${t.name}`)
    .join(', ');
}
