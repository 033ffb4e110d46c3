/**
 * Request bodies to model inputs, with a 4xx naming what is wrong and where for every bad input:
 *  - JSON `{inputs: [...]}`: one entry per sample, flat (H·W·C numbers, NHWC order) or nested
 *    [H][W][C] (or [H][W] for one channel); token models take arrays of integer token ids.
 *  - binary: raw little-endian float32, the shape in the `x-shape` header (`N,H,W,C` or `N,H·W·C`).
 */
import { sampleSize, type InputSpec } from '../deploy/model.js';

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

export const SHAPE_HEADER = 'x-shape';

const FLOAT32_RANGE = 'expected a finite float32 value (|x| ≤ 3.4e38); inputs are float32';

export { sampleSize, type InputSpec };

/** A batch of samples in the model's layout: [n, ...sample] flattened. */
export interface Samples {
  n: number;
  data: Float32Array | Int32Array;
}

/**
 * The largest body a request of `maxBatch` samples needs: JSON at up to 64 bytes a value (17
 * digits, sign, exponent, separator, and the nesting and indentation of [H][W][C]) or up to 12 a
 * token id, plus room for the other fields. A float32 body (`x-shape`) needs 4 bytes a value.
 */
export function bodyLimitFor(spec: InputSpec, maxBatch: number): number {
  return 8192 + sampleSize(spec) * maxBatch * (spec.kind === 'tokens' ? 12 : 64);
}

export function describeInput(spec: InputSpec): string {
  return spec.kind === 'image'
    ? `float32 [${spec.shape.join(', ')}] per sample (or ${sampleSize(spec)} flat values)`
    : `up to ${spec.maxLen} integer token ids in 0..${spec.vocab - 1} per sample`;
}

function bad(message: string): HttpError {
  return new HttpError(400, message);
}

/** Writes nested numbers of `v` into out[offset…], checking the shape dims[level…]. */
function fillNested(
  v: unknown,
  dims: readonly number[],
  level: number,
  out: Float32Array,
  at: number,
  where: string,
): number {
  if (level === dims.length) {
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw bad(
        `${where} is ${typeof v === 'number' ? v : (JSON.stringify(v) ?? typeof v)}; expected a finite number`,
      );
    // JSON numbers are float64; the model computes in float32, where 1e39 would be Infinity.
    if (!Number.isFinite(Math.fround(v))) throw bad(`${where} is ${v}; ${FLOAT32_RANGE}`);
    out[at] = v;
    return at + 1;
  }
  if (!Array.isArray(v))
    throw bad(
      `${where} is ${typeof v === 'number' ? 'a number' : typeof v}; expected an array of ${dims[level]}`,
    );
  if (v.length !== dims[level]) throw bad(`${where} has ${v.length} entries; expected ${dims[level]}`);
  for (let i = 0; i < v.length; i++) at = fillNested(v[i], dims, level + 1, out, at, `${where}[${i}]`);
  return at;
}

function imageSample(
  v: unknown,
  shape: readonly number[],
  out: Float32Array,
  at: number,
  where: string,
): void {
  const size = shape.reduce((a, b) => a * b, 1);
  if (!Array.isArray(v)) throw bad(`${where} is ${typeof v}; expected an array (one sample)`);
  if (v.length === size && (v.length === 0 || !Array.isArray(v[0]))) {
    fillNested(v, [size], 0, out, at, where);
    return;
  }
  // Nested: [H][W][C], or [H][W] when there is one channel.
  const dims =
    shape[shape.length - 1] === 1 && !Array.isArray((v[0] as unknown[])?.[0]) ? shape.slice(0, -1) : shape;
  if (v.length !== dims[0] || !Array.isArray(v[0])) {
    throw bad(
      `${where} has ${v.length} entries; expected ${size} numbers (flat) or nested [${shape.join('][')}]`,
    );
  }
  fillNested(v, dims, 0, out, at, where);
}

function tokenSample(
  v: unknown,
  spec: Extract<InputSpec, { kind: 'tokens' }>,
  out: Int32Array,
  at: number,
  where: string,
): void {
  if (!Array.isArray(v)) throw bad(`${where} is ${typeof v}; expected an array of token ids`);
  if (v.length === 0 || v.length > spec.maxLen)
    throw bad(`${where} has ${v.length} tokens; expected 1..${spec.maxLen}`);
  out.fill(spec.padId, at, at + spec.maxLen);
  v.forEach((t, i) => {
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= spec.vocab)
      throw bad(
        `${where}[${i}] is ${JSON.stringify(t)}; expected an integer token id in 0..${spec.vocab - 1}`,
      );
    out[at + i] = t;
  });
}

/**
 * Throws a 400 for the first sample whose class probabilities are not finite: values that are
 * finite float32 but so large that the forward pass overflows (3e38 → NaN logits). `field(i)`
 * names sample i as the request gave it (`inputs[i]`, or `sample i` of a binary body).
 */
export function checkFiniteOutput(
  rows: readonly Float32Array[],
  samples: Samples,
  field: (i: number) => string,
): void {
  const size = samples.data.length / Math.max(samples.n, 1);
  rows.forEach((p, i) => {
    if (p.every(Number.isFinite)) return;
    let largest = 0;
    for (let k = i * size; k < (i + 1) * size; k++) largest = Math.max(largest, Math.abs(samples.data[k]));
    throw bad(
      `${field(i)} makes the model's output non-finite (its largest value is ${largest.toPrecision(3)}); ` +
        'send values in the scale the model was trained on',
    );
  });
}

/** `inputs` of a JSON body (its array-ness and length are checked by the route schema). */
export function samplesFromJson(inputs: readonly unknown[], spec: InputSpec): Samples {
  const size = sampleSize(spec);
  const n = inputs.length;
  if (spec.kind === 'tokens') {
    const data = new Int32Array(n * size);
    inputs.forEach((v, i) => tokenSample(v, spec, data, i * size, `inputs[${i}]`));
    return { n, data };
  }
  const data = new Float32Array(n * size);
  inputs.forEach((v, i) => imageSample(v, spec.shape, data, i * size, `inputs[${i}]`));
  return { n, data };
}

/** Parses the shape header: positive integers, comma-separated. */
export function parseShape(header: string | string[] | undefined): number[] {
  if (header === undefined)
    throw bad(`a binary body needs the '${SHAPE_HEADER}' header, e.g. '${SHAPE_HEADER}: 1,28,28,1'`);
  const text = Array.isArray(header) ? header.join(',') : header;
  const dims = text.split(',').map((d) => d.trim());
  if (dims.length < 2 || dims.length > 8 || dims.some((d) => !/^[0-9]{1,9}$/.test(d) || Number(d) < 1)) {
    throw bad(`'${SHAPE_HEADER}: ${text.slice(0, 100)}' must be 2..8 positive integers like 1,28,28,1`);
  }
  return dims.map(Number);
}

/** A binary float32 body of shape `shape` ([N, ...sample]). */
export function samplesFromBinary(
  body: Buffer,
  shape: readonly number[],
  spec: InputSpec,
  maxSamples: number,
): Samples {
  if (spec.kind !== 'image')
    throw new HttpError(415, 'this model takes token ids: send them as JSON {"inputs": [[ids…]]}');
  const size = sampleSize(spec);
  const [n, ...rest] = shape;
  const restSize = rest.reduce((a, b) => a * b, 1);
  const exact = rest.length === spec.shape.length && rest.every((d, i) => d === spec.shape[i]);
  if (!exact && !(rest.length === 1 && restSize === size)) {
    throw bad(
      `shape [${shape.join(', ')}] does not fit the model: expected [N, ${spec.shape.join(', ')}] or [N, ${size}]`,
    );
  }
  if (n > maxSamples) throw new HttpError(413, `${n} samples in one request; at most ${maxSamples}`);
  const bytes = n * size * 4;
  if (body.length !== bytes) {
    throw bad(
      `the body holds ${body.length} bytes; shape [${shape.join(', ')}] needs ${bytes} (float32, little-endian)${body.length < bytes ? ': truncated?' : ''}`,
    );
  }
  const data = new Float32Array(n * size);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let i = 0; i < data.length; i++) {
    const v = view.getFloat32(4 * i, true);
    if (!Number.isFinite(v)) {
      throw bad(`sample ${Math.floor(i / size)}, value ${i % size} is ${v}; inputs must be finite numbers`);
    }
    data[i] = v;
  }
  return { n, data };
}
