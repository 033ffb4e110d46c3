/**
 * The safetensors format (huggingface/safetensors): u64 little-endian header length, a JSON
 * header `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}`,
 * then the raw little-endian bytes. Readable by Python's `safetensors.numpy.load_file`.
 */
export interface NamedArray {
  dtype: 'F32' | 'I32';
  shape: number[];
  data: Float32Array | Int32Array;
}

export function encodeSafetensors(
  tensors: Map<string, NamedArray>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const names = [...tensors.keys()].sort();
  for (const name of names) {
    const t = tensors.get(name)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length)
      throw new Error(`safetensors: '${name}' has shape [${t.shape}] but ${t.data.length} values`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces to 8 bytes so the data is aligned (as the Rust writer does).
  // TextEncoder/TextDecoder rather than Buffer: checkpoints are also read in browsers.
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors.get(name)!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  return out;
}

/**
 * `widen`: F16 and BF16 tensors (how Hugging Face checkpoints are usually stored) are read as F32,
 * exactly (every half value is a float32 value).
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  source = 'safetensors data',
  opts: { widen?: boolean } = {},
): { tensors: Map<string, NamedArray>; metadata: Record<string, string> } {
  if (bytes.length < 8)
    throw new Error(`${source}: file too short (${bytes.length} bytes) to be safetensors`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n <= 0 || 8 + n > bytes.length)
    throw new Error(
      `${source}: header length ${n} does not fit a file of ${bytes.length} bytes (corrupt or truncated)`,
    );
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new Error(`${source}: header is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new Error(
      `${source}: the header is ${JSON.stringify(header)}, not an object of tensors (corrupt?)`,
    );
  }
  const metadata = (header.__metadata__ ?? {}) as unknown as Record<string, string>;
  delete header.__metadata__;
  const base = 8 + n;
  const tensors = new Map<string, NamedArray>();
  for (const [name, h] of Object.entries(header)) {
    if (
      h === null ||
      typeof h !== 'object' ||
      !Array.isArray(h.shape) ||
      !h.shape.every((d) => Number.isInteger(d) && d >= 0) ||
      !Array.isArray(h.data_offsets)
    ) {
      throw new Error(
        `${source}: tensor '${name}' has no valid shape and data_offsets: ${JSON.stringify(h)}`,
      );
    }
    const [begin, end] = h.data_offsets;
    if (!(begin >= 0 && end >= begin && base + end <= bytes.length)) {
      throw new Error(
        `${source}: tensor '${name}' offsets [${begin}, ${end}] lie outside the file (truncated?)`,
      );
    }
    const half = h.dtype === 'F16' || h.dtype === 'BF16';
    if (!(h.dtype === 'F32' || h.dtype === 'I32' || h.dtype === 'I64' || (half && opts.widen)))
      throw new Error(
        `${source}: tensor '${name}' has dtype ${h.dtype}; only F32, I32 and I64 are supported${opts.widen ? ' (and F16, BF16)' : ''}`,
      );
    const size = h.shape.reduce((a, b) => a * b, 1);
    const width = h.dtype === 'I64' ? 8 : h.dtype === 'F16' || h.dtype === 'BF16' ? 2 : 4;
    if (end - begin !== size * width)
      throw new Error(`${source}: tensor '${name}' has ${end - begin} bytes for shape [${h.shape}]`);
    // Copy into an aligned buffer: the file's offsets need not be 4-byte aligned.
    const raw = new Uint8Array(end - begin);
    raw.set(bytes.subarray(base + begin, base + end)); // Buffer#slice would alias, not copy
    if (h.dtype === 'F32')
      tensors.set(name, { dtype: 'F32', shape: h.shape, data: new Float32Array(raw.buffer) });
    else if (h.dtype === 'I32')
      tensors.set(name, { dtype: 'I32', shape: h.shape, data: new Int32Array(raw.buffer) });
    else if (h.dtype === 'I64') {
      // PyTorch writes integer counters (BatchNorm's num_batches_tracked) as int64: read as int32 when they fit.
      const wide = new BigInt64Array(raw.buffer);
      const data = new Int32Array(size);
      for (let i = 0; i < size; i++) {
        if (wide[i] < -(2n ** 31n) || wide[i] >= 2n ** 31n)
          throw new Error(`${source}: tensor '${name}' (I64) holds ${wide[i]}, beyond the int32 range`);
        data[i] = Number(wide[i]);
      }
      tensors.set(name, { dtype: 'I32', shape: h.shape, data });
    } else
      tensors.set(name, {
        dtype: 'F32',
        shape: h.shape,
        data: widen(new Uint16Array(raw.buffer), h.dtype as 'F16' | 'BF16'),
      });
  }
  return { tensors, metadata };
}

/** IEEE half or bfloat16 bit patterns → float32 values. */
function widen(bits: Uint16Array, dtype: 'F16' | 'BF16'): Float32Array {
  const out = new Float32Array(bits.length);
  if (dtype === 'BF16') {
    // bfloat16 is the top half of a float32.
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
    return out;
  }
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const sign = b & 0x8000 ? -1 : 1;
    const exp = (b >> 10) & 0x1f;
    const frac = b & 0x3ff;
    out[i] =
      exp === 0
        ? sign * frac * 2 ** -24 // subnormal
        : exp === 31
          ? frac
            ? NaN
            : sign * Infinity
          : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}
