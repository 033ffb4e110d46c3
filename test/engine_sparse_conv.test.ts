/**
 * The sparse per-sample convolution (src/engine/ops/sparse_per_sample_conv2d.ts): on the native path
 * (wasm + addon) and on the portable one it must equal a dense reference, one tf.conv2d per sample with
 * the kernel shared + Σ_i values[b, i]·e_i, for strides 1–3, 'same' and 'valid', odd sizes, nnz = 0 and
 * nnz = every element; a compact PAD conv on the native path must equal the masked layer; a gradient and
 * bad sizes give clear errors.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import {
  disableNativeKernels,
  enableNativeKernels,
  loadNativeBlas,
  nativeBlasUnavailableReason,
} from '../src/engine/native/index.js';
import { sparsePerSampleConv2d, type SparseKernels } from '../src/engine/ops/sparse_per_sample_conv2d.js';
import type { ConvGeometry } from '../src/engine/ops/per_sample_conv2d.js';
import { PadConv2d } from '../src/dynamic/partial.js';
import { CompactPadConv2d } from '../src/dynamic/compact.js';
import { seedStream } from '../src/nn/init.js';
import { kernelsUsed, missingKernels } from '../src/engine/kernels_used.js';
import { SparsePerSampleConv2D } from '../src/engine/kernels/sparse_per_sample_conv2d.js';
import { assertClose, rng } from './helpers.js';
import { countCalls } from './kernel_helpers.js';

const blas = loadNativeBlas();
const skip = blas ? false : `native BLAS kernels unavailable: ${nativeBlasUnavailableReason()}`;
/** Calls of the addon's sparse kernel since the last reset: proves which path ran. */
let nativeCalls = 0;

before(async () => {
  await initEngine('wasm');
  if (blas) countCalls(blas, ['sparsePerSampleConv2d'], () => nativeCalls++);
});

after(() => {
  disableNativeKernels();
});

interface Case {
  name: string;
  batch: number;
  size: [number, number];
  cin: number;
  cout: number;
  geometry: ConvGeometry;
  /** Fraction of the kernel's elements that are sparse (0: none, 1: all, no shared kernel). */
  density: number;
}

/** A case: name, batch, [height, width], in and out channels, geometry, density. */
const row = (
  name: string,
  batch: number,
  size: [number, number],
  cin: number,
  cout: number,
  geometry: ConvGeometry,
  density: number,
): Case => ({ name, batch, size, cin, cout, geometry, density });

const CASES: Case[] = [
  row('stride 1, same', 3, [9, 7], 5, 6, g(3, 1, 'same'), 0.3),
  row('stride 1, valid', 2, [8, 11], 3, 4, g(3, 1, 'valid'), 0.4),
  row('stride 2, same, odd', 3, [9, 7], 4, 5, g(3, 2, 'same'), 0.3),
  row('stride 2, valid', 2, [10, 9], 3, 7, g(3, 2, 'valid'), 0.5),
  row('stride 3, 5×5, same', 2, [11, 8], 2, 3, g(5, 3, 'same'), 0.3),
  row('1×1', 2, [5, 6], 7, 9, g(1, 1, 'same'), 0.3),
  row('nnz = 0', 2, [6, 5], 3, 4, g(3, 2, 'same'), 0),
  row('nnz = all', 3, [7, 6], 3, 5, g(3, 1, 'same'), 1),
  row('nnz = all, stride 2', 2, [7, 7], 3, 4, g(3, 2, 'valid'), 1),
  row('one sample', 1, [5, 5], 2, 3, g(3, 1, 'same'), 0.5),
];

function g(kernel: number, stride: number, padding: 'same' | 'valid'): ConvGeometry {
  return { kernel, stride, padding };
}

/** Values, positions and the shared kernel (zero at the sparse positions, null when all are sparse). */
function operands(c: Case, seed: number): { x: tf.Tensor4D; kernels: SparseKernels; dense: Float32Array[] } {
  const random = rng(seed);
  const k = c.geometry.kernel;
  const P = k * k * c.cin * c.cout;
  const positions = Array.from({ length: P }, (_, p) => p).filter(
    () => c.density === 1 || random() < c.density,
  );
  const nnz = positions.length;
  const shared = new Float32Array(P).map(() => random() * 2 - 1);
  for (const p of positions) shared[p] = 0;
  const values = new Float32Array(c.batch * nnz).map(() => random() * 2 - 1);
  // Sample b's dense kernel, built here element by element: the reference's.
  const dense = Array.from({ length: c.batch }, (_, b) => {
    const w = c.density === 1 ? new Float32Array(P) : Float32Array.from(shared);
    positions.forEach((p, i) => (w[p] += values[b * nnz + i]));
    return w;
  });
  const x = tf.tensor4d(
    new Float32Array(c.batch * c.size[0] * c.size[1] * c.cin).map(() => random() * 2 - 1),
    [c.batch, ...c.size, c.cin],
  );
  const kernels: SparseKernels = {
    values: tf.tensor2d(values, [c.batch, nnz]),
    index: tf.tensor2d(Int32Array.from(positions), [nnz, 1], 'int32'),
    shared: c.density === 1 ? null : tf.tensor4d(shared, [k, k, c.cin, c.cout]),
    outChannels: c.cout,
  };
  return { x, kernels, dense };
}

function reference(c: Case, x: tf.Tensor4D, dense: Float32Array[]): tf.Tensor4D {
  const k = c.geometry.kernel;
  return tf.tidy(() =>
    tf.concat(
      dense.map((w, b) =>
        tf.conv2d(
          tf.slice(x, [b, 0, 0, 0], [1, -1, -1, -1]),
          tf.tensor4d(w, [k, k, c.cin, c.cout]),
          c.geometry.stride,
          c.geometry.padding,
        ),
      ),
    ),
  );
}

function checkPath(path: 'native' | 'portable'): void {
  for (const [i, c] of CASES.entries()) {
    const { x, kernels, dense } = operands(c, 100 + i);
    disableNativeKernels();
    const expected = reference(c, x, dense);
    if (path === 'native') enableNativeKernels();
    nativeCalls = 0;
    const actual = sparsePerSampleConv2d(x, kernels, c.geometry);
    const nnz = kernels.index.shape[0];
    assert.equal(nativeCalls, path === 'native' && nnz > 0 ? 1 : 0, `${c.name}: the ${path} path ran`);
    assertClose(actual, expected, 1e-5, `${path}, ${c.name}`);
    tf.dispose([x, kernels.values, kernels.index, kernels.shared ?? [], expected, actual]);
  }
}

test(
  'native path equals one dense conv2d per sample (strides 1–3, same/valid, odd sizes, nnz 0 and all)',
  { skip },
  () => checkPath('native'),
);

test('native path without AVX2 (the direct kernels switched off) equals the same reference', { skip }, () => {
  const before = blas!.convDirect();
  blas!.convDirect(false);
  try {
    checkPath('native');
  } finally {
    blas!.convDirect(before);
  }
});

test('portable path equals one dense conv2d per sample (same cases)', () => checkPath('portable'));

test('a compact PAD conv on the native path equals the masked layer (stride 1 and 2)', { skip }, () => {
  enableNativeKernels();
  const ctx = { mode: 'eval', key: 'full' } as const;
  for (const [cin, cout, size, stride, kappa] of [
    [16, 16, 12, 1, 0.3],
    [8, 12, 11, 2, 0.5],
  ]) {
    const layer = new PadConv2d(cin, cout, 3, seedStream(1), { stride });
    tf.tidy(() => {
      layer.mask.assign(
        tf.cast(tf.less(tf.randomUniform(layer.mask.shape, 0, 1, 'float32', 5), kappa), 'float32'),
      );
      layer.phi.assign(tf.scalar(0.3)); // λ ≠ 1: the folding is tested too
    });
    const compact = CompactPadConv2d.from(layer);
    const x = tf.randomNormal([4, size, size, cin], 0, 1, 'float32', 2) as tf.Tensor4D;
    nativeCalls = 0;
    tf.tidy(() =>
      assertClose(
        compact.forward(x, cout, ctx),
        layer.forward(x, cout, ctx),
        1e-5,
        `${cin} → ${cout}, stride ${stride}`,
      ),
    );
    assert.equal(nativeCalls, 1);
    layer.dispose();
    compact.dispose();
    x.dispose();
  }
});

test('a compact PAD conv reloaded with other weights uses them (its static kernel is not stale)', () => {
  const ctx = { mode: 'eval', key: 'full' } as const;
  const [a, b] = [1, 2].map((seed) => new PadConv2d(6, 8, 3, seedStream(seed)));
  const mask = tf.tidy(() =>
    tf.cast(tf.less(tf.randomUniform(a.mask.shape, 0, 1, 'float32', 3), 0.4), 'float32'),
  );
  a.mask.assign(mask);
  b.mask.assign(mask);
  const compact = CompactPadConv2d.from(a);
  const x = tf.randomNormal([2, 7, 7, 6], 0, 1, 'float32', 4) as tf.Tensor4D;
  tf.tidy(() => assertClose(compact.forward(x, 8, ctx), a.forward(x, 8, ctx), 1e-5, 'from a'));
  compact.load(b);
  tf.tidy(() => assertClose(compact.forward(x, 8, ctx), b.forward(x, 8, ctx), 1e-5, 'reloaded from b'));
  [a, b, compact].forEach((m) => m.dispose());
  tf.dispose([mask, x]);
});

test('the native kernel is optional: a backend without it is not missing a kernel', { skip }, async () => {
  enableNativeKernels();
  const c = CASES[0];
  const { x, kernels } = operands(c, 11);
  const names = await kernelsUsed(
    () => void tf.tidy(() => sparsePerSampleConv2d(x, kernels, c.geometry).dataSync()),
  );
  assert.ok(names.includes(SparsePerSampleConv2D), `kernels used: ${names.join(', ')}`);
  assert.deepEqual(missingKernels(names, 'cpu'), []);
  tf.dispose([x, kernels.values, kernels.index, kernels.shared ?? []]);
});

test('a gradient through the op throws a clear error on both paths, nnz = 0 included', () => {
  for (const c of [CASES[0], CASES.find((k) => k.density === 0)!]) {
    for (const native of blas ? [true, false] : [false]) {
      if (native) enableNativeKernels();
      else disableNativeKernels();
      const { x, kernels } = operands(c, 7);
      const loss = (xIn: tf.Tensor) => tf.sum(sparsePerSampleConv2d(xIn as tf.Tensor4D, kernels, c.geometry));
      assert.throws(
        () => tf.grad(loss)(x),
        /has no gradient: train the masked PadConv2d, then compact it/,
        `${c.name}, ${native ? 'native' : 'portable'}`,
      );
      tf.dispose([x, kernels.values, kernels.index, kernels.shared ?? []]);
    }
  }
});

test('wrong sizes: the op names them; the addon throws instead of reading out of bounds', { skip }, () => {
  const c = CASES[0];
  const { x, kernels } = operands(c, 9);
  assert.throws(
    () =>
      sparsePerSampleConv2d(
        x,
        { ...kernels, values: tf.zeros([c.batch + 1, kernels.index.shape[0]]) },
        c.geometry,
      ),
    /values \[4, \d+\] must be \[3, \d+\]/,
  );
  const geometry = Int32Array.from([1, 4, 4, 2, 4, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1]);
  const out = new Float32Array(4 * 4 * 3);
  const x1 = new Float32Array(4 * 4 * 2);
  assert.throws(
    () => blas!.sparsePerSampleConv2d(x1, new Float32Array(1), Int32Array.from([54]), out, geometry),
    /index\[0\] = 54 is outside a kernel of 54 elements/,
  );
  assert.throws(
    () => blas!.sparsePerSampleConv2d(x1, new Float32Array(1), Int32Array.from([-1]), out, geometry),
    /index\[0\] = -1 is outside/,
  );
  assert.throws(
    () =>
      blas!.sparsePerSampleConv2d(x1.subarray(1), new Float32Array(1), Int32Array.from([0]), out, geometry),
    /x needs 32 elements, the array has 31/,
  );
  assert.throws(
    () => blas!.sparsePerSampleConv2d(x1, new Float32Array(1), Int32Array.from([0, 1]), out, geometry),
    /values needs 2 elements, the array has 1/,
  );
  assert.throws(
    () =>
      blas!.sparsePerSampleConv2d(x1, new Float32Array(1), Int32Array.from([0]), out.subarray(1), geometry),
    /out needs 48 elements, the array has 47/,
  );
  tf.dispose([x, kernels.values, kernels.index, kernels.shared ?? []]);
});
