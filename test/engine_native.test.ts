/**
 * The OpenBLAS kernels for the wasm backend (src/engine/native/): each product is computed with the stock
 * wasm kernel and with the native override and must agree to 1e-4 relative; gradients through them must
 * match the cpu backend. Skipped, with the reason, when the addon is not built.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { initEngine } from '../src/engine/backend.js';
import {
  describeNativeKernels,
  disableNativeKernels,
  enableNativeKernels,
  loadNativeBlas,
  nativeBlasUnavailableReason,
  addonMismatch,
} from '../src/engine/native/index.js';
import { prefixMatMul } from '../src/engine/ops/prefix_mat_mul.js';
import { packedLength } from '../src/engine/native/packed_weights.js';

import { assertCloseRelative, countCalls, uniformTensor } from './kernel_helpers.js';

const TOLERANCE = 1e-4;
/** These tests are about the OpenBLAS kernels: convolutions stay off oneDNN (test/engine_dnnl.test.ts). */
const BLAS_ONLY = { dnnl: false };
const blas = loadNativeBlas();
const skip = blas ? false : `native BLAS kernels unavailable: ${nativeBlasUnavailableReason()}`;
/** Native GEMM and convolution calls since the last reset, counted by wrapping the addon's functions. */
let nativeCalls = 0;
const COUNTED = ['sgemmStridedBatched', 'conv2d', 'conv2dBackpropInput', 'conv2dBackpropFilter'];

before(async () => {
  await initEngine('wasm');
  if (blas) countCalls(blas, COUNTED, () => nativeCalls++);
});

after(() => {
  disableNativeKernels();
});

const random = uniformTensor;
const assertClose = (actual: tf.Tensor, expected: tf.Tensor, what: string) =>
  assertCloseRelative(actual, expected, what, TOLERANCE);

/**
 * Runs `compute` on the reference (the stock wasm kernels, or the cpu backend) and on wasm with the native
 * kernels, checks they agree, and returns the native GEMM calls made.
 */
async function assertNativeMatches(
  what: string,
  compute: () => tf.Tensor,
  reference: 'stock wasm' | 'cpu' = 'stock wasm',
): Promise<number> {
  if (reference === 'cpu') await tf.setBackend('cpu');
  else disableNativeKernels();
  const expected = tf.tidy(compute);
  await tf.setBackend('wasm');
  assert.equal(enableNativeKernels(BLAS_ONLY).enabled, true);
  nativeCalls = 0;
  const actual = tf.tidy(compute);
  const calls = nativeCalls;
  assertClose(actual, expected, `${what} (against ${reference})`);
  tf.dispose([actual, expected]);
  return calls;
}

/** `compute` on the cpu backend, then on wasm with the native kernels: both results and the native calls made. */
async function onCpuAndNative(compute: () => tf.Tensor[]) {
  await tf.setBackend('cpu');
  const expected = compute();
  await tf.setBackend('wasm');
  enableNativeKernels(BLAS_ONLY);
  nativeCalls = 0;
  const actual = compute();
  return { expected, actual, calls: nativeCalls };
}

test('an addon built from older sources is refused with the functions it lacks and how to rebuild', () => {
  const fns = [
    'sgemm',
    'sgemmStridedBatched',
    'biasActivation',
    'conv2d',
    'conv2dBackpropInput',
    'conv2dBackpropFilter',
    'sparsePerSampleConv2d',
    'batchNormTrain',
    'batchNormTrainGrad',
    'convDirect',
    'smallGemm',
    'packWeight',
    'sgemmPacked',
    'packedGemm',
    'attendCached',
    'rmsNorm',
    'rotary',
    'scaleShift',
    'config',
  ];
  const full = Object.fromEntries(fns.map((f) => [f, () => undefined]));
  assert.equal(addonMismatch(full, 'x.node'), null);
  const { sparsePerSampleConv2d: _, ...stale } = full;
  assert.equal(
    addonMismatch(stale, 'x.node'),
    'x.node was built from older sources (it lacks sparsePerSampleConv2d); rebuild it with npm rebuild',
  );
  if (blas) assert.equal(addonMismatch(blas, 'x.node'), null);
});

test('status: enabled with OpenBLAS, and disabling says so', { skip }, () => {
  const status = enableNativeKernels(BLAS_ONLY);
  assert.equal(status.enabled, true);
  assert.deepEqual(status.kernels, [
    'BatchMatMul',
    '_FusedMatMul',
    'Conv2D',
    'FusedConv2D',
    'Conv2DBackpropInput',
    'Conv2DBackpropFilter',
    'SortedNetBatchNormTrain',
    'SortedNetBatchNormTrainGrad',
    'SortedNetPrefixMatMul',
    'SortedNetPrefixMatMulGradInput',
    'SortedNetPrefixMatMulGradWeight',
    'SortedNetSparsePerSampleConv2D',
    'SortedNetCachedAttention',
    'SortedNetRmsNorm',
    'SortedNetRotary',
    'SortedNetScaleShift',
  ]);
  assert.match(describeNativeKernels(), /^native BLAS: on \(OpenBLAS/);
  disableNativeKernels();
  assert.match(describeNativeKernels(), /^native BLAS: off \(native kernels are disabled/);
});

test('matMul: transposes and odd sizes', { skip }, async () => {
  const [M, K, N] = [37, 53, 29];
  for (const [transposeA, transposeB] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ]) {
    const calls = await assertNativeMatches(`transposeA=${transposeA} transposeB=${transposeB}`, () =>
      tf.matMul(
        random(transposeA ? [K, M] : [M, K], 1),
        random(transposeB ? [N, K] : [K, N], 2),
        transposeA,
        transposeB,
      ),
    );
    assert.equal(calls, 1, 'the native kernel ran');
  }
  await assertNativeMatches('a row vector 1×300·300×7', () =>
    tf.matMul(random([1, 300], 3), random([300, 7], 4)),
  );
});

/** Arrays of n values in [−0.5, 0.5) from one small LCG stream, so the values differ in every lane and call. */
function lcgFill(seed: number): (n: number) => Float32Array {
  return (n) =>
    Float32Array.from({ length: n }, () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31 - 0.5;
    });
}

test('sgemm of a few rows against Bᵀ: the few-row kernel equals float64 sums at every edge', { skip }, () => {
  const native = blas!;
  const fill = lcgFill(7);
  const few = native.smallGemm();
  let checked = 0;
  try {
    for (const on of few ? [true, 'avx2' as const, false] : [false]) {
      native.smallGemm(on);
      // M across the kernel's row blocks (1–4, 2) and its limits (8, 12) and past them; N across its blocks of 4
      // rows of B; K across the 8- and 16-lane steps and their tails.
      for (const m of [1, 2, 3, 4, 5, 7, 8, 9, 12, 13])
        for (const n of [1, 3, 4, 5, 13])
          for (const k of [1, 7, 8, 15, 16, 17, 33, 192]) {
            // Prefix views, as the sorted layers use: leading dimensions wider than the rows.
            const [lda, ldb, ldc] = [k + 3, k + 5, n + 2];
            const a = fill(m * lda);
            const b = fill(n * ldb);
            for (const [alpha, beta] of [
              [1, 0],
              [0.5, 0.25],
            ]) {
              const c0 = fill(m * ldc);
              // beta = 0 must not read C: NaN there must not reach the result.
              const c = beta === 0 ? new Float32Array(m * ldc).fill(NaN) : c0.slice();
              native.sgemm(false, true, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
              for (let i = 0; i < m; i++)
                for (let j = 0; j < n; j++) {
                  let sum = 0;
                  for (let kk = 0; kk < k; kk++) sum += a[i * lda + kk] * b[j * ldb + kk];
                  const want = alpha * sum + beta * c0[i * ldc + j] * (beta === 0 ? 0 : 1);
                  const got = c[i * ldc + j];
                  assert.ok(
                    Math.abs(got - want) <= 1e-5 * (1 + Math.abs(want)),
                    `few-row kernel ${String(on)}, M ${m} N ${n} K ${k}, alpha ${alpha} beta ${beta}: C[${i}, ${j}] = ${got}, want ${want}`,
                  );
                  checked++;
                }
              // Past each row's N columns C is untouched.
              for (let i = 0; i < m; i++)
                for (let j = n; j < ldc; j++)
                  assert.ok(
                    beta === 0 ? Number.isNaN(c[i * ldc + j]) : c[i * ldc + j] === c0[i * ldc + j],
                    `M ${m} N ${n} K ${k}: C[${i}, ${j}] past the columns was written`,
                  );
            }
          }
    }
  } finally {
    native.smallGemm(few);
  }
  assert.ok(checked > 0);
});

const packedSkip = skip || (blas!.packedGemm() ? false : 'the packed few-row kernel needs AVX-512');

test(
  "sgemmPacked: any prefix of a packed weight equals float64 sums; a row's bits do not depend on M",
  { skip: packedSkip },
  () => {
    const native = blas!;
    const fill = lcgFill(11);
    let checked = 0;
    // A weight of 70 rows (two full panels of 32 and a partial one) and 40 columns, stored with a wider row.
    for (const [rows, cols, ldw] of [
      [70, 40, 43],
      [130, 40, 43], // N past 96: the 4-panel kernels of 1 and 2 rows
      [32, 192, 192],
      [5, 17, 17],
    ]) {
      const w = fill(rows * ldw);
      const packed = new Float32Array(packedLength(rows, cols));
      native.packWeight(w, rows, cols, ldw, packed);
      for (const m of [1, 2, 3, 4, 5, 8, 12, 13, 25])
        for (const n of [1, 15, 16, 17, 31, 32, 33, 97, 128, 129, rows].filter((x) => x <= rows))
          for (const k of [0, 1, 16, cols].filter((x) => x <= cols)) {
            const [lda, ldc] = [k + 3, n + 2];
            const a = fill(m * lda);
            for (const [alpha, beta] of [
              [1, 0],
              [0.5, 0.25],
            ]) {
              const c0 = fill(m * ldc);
              const c = beta === 0 ? new Float32Array(m * ldc).fill(NaN) : c0.slice();
              native.sgemmPacked(m, n, k, alpha, a, lda, packed, rows, cols, beta, c, ldc);
              for (let i = 0; i < m; i++) {
                for (let j = 0; j < n; j++) {
                  let sum = 0;
                  for (let kk = 0; kk < k; kk++) sum += a[i * lda + kk] * w[j * ldw + kk];
                  const want = alpha * sum + (beta === 0 ? 0 : beta * c0[i * ldc + j]);
                  const got = c[i * ldc + j];
                  assert.ok(
                    Math.abs(got - want) <= 1e-5 * (1 + Math.abs(want)),
                    `W ${rows}×${cols}: M ${m} N ${n} K ${k}, alpha ${alpha} beta ${beta}: C[${i}, ${j}] = ${got}, want ${want}`,
                  );
                  checked++;
                }
                for (let j = n; j < ldc; j++)
                  assert.ok(
                    beta === 0 ? Number.isNaN(c[i * ldc + j]) : c[i * ldc + j] === c0[i * ldc + j],
                    `M ${m} N ${n} K ${k}: C[${i}, ${j}] past the columns was written`,
                  );
              }
              if (beta !== 0 || m === 1) continue;
              // Each row alone gives the same bits: batched decoding equals one sequence at a time.
              for (let i = 0; i < m; i++) {
                const one = new Float32Array(n);
                native.sgemmPacked(1, n, k, alpha, a.subarray(i * lda), lda, packed, rows, cols, 0, one, n);
                assert.deepEqual(
                  one,
                  c.subarray(i * ldc, i * ldc + n),
                  `M ${m} N ${n} K ${k}: row ${i} alone differs`,
                );
              }
            }
          }
    }
    assert.ok(checked > 0);
    const w = fill(64 * 8);
    assert.throws(
      () => native.packWeight(w, 64, 8, 8, new Float32Array(packedLength(64, 8) - 1)),
      /P needs 528 floats/,
    );
    const packed = new Float32Array(packedLength(64, 8));
    native.packWeight(w, 64, 8, 8, packed);
    const out = new Float32Array(65);
    assert.throws(
      () => native.sgemmPacked(1, 65, 8, 1, fill(8), 8, packed, 64, 8, 0, out, 65),
      /W\[:65, :8\] does not fit a 64 x 8 weight/,
    );
    assert.throws(
      () => native.sgemmPacked(2, 4, 8, 1, fill(8), 8, packed, 64, 8, 0, out, 4),
      /A needs 16 elements/,
    );
    // A copy sits at another alignment: its panels are not where the kernel would look.
    const moved = new Float32Array(packed.length + 1).subarray(1);
    moved.set(packed);
    assert.throws(
      () => native.sgemmPacked(1, 4, 8, 1, fill(8), 8, moved, 64, 8, 0, out, 4),
      /P is not the array packWeight filled/,
    );
  },
);

test(
  'prefixMatMul of a few rows reads the packed weight, and an assigned weight is packed afresh',
  { skip: packedSkip },
  () => {
    enableNativeKernels(BLAS_ONLY);
    const w = tf.variable(uniformTensor([40, 24], 21) as tf.Tensor2D);
    const x = uniformTensor([3, 20], 22) as tf.Tensor2D;
    const composed = () => tf.tidy(() => tf.matMul(x, tf.slice(w, [0, 0], [33, 20]), false, true));
    let packs = 0;
    countCalls(blas!, ['packWeight'], () => packs++);
    for (let step = 0; step < 3; step++) {
      const got = prefixMatMul(x, w, 33);
      const want = composed();
      assertCloseRelative(got, want, `step ${step}`, 1e-5);
      tf.dispose([got, want]);
      // The first product packs; the next reads the copy; an update gives the variable new data, packed again.
      assert.equal(packs, step < 2 ? 1 : 2, `packs after step ${step}`);
      if (step === 1) tf.tidy(() => w.assign(tf.mul(w, -2)));
    }
    tf.dispose([w, x]);
  },
);

test('matMul: batches, broadcast batches and higher ranks', { skip }, async () => {
  const cases: [string, number[], number[], boolean, boolean][] = [
    ['equal batches', [3, 20, 30], [3, 30, 17], false, false],
    ['a broadcast over b', [1, 20, 30], [4, 17, 30], false, true],
    ['rank-2 b over a batch', [4, 30, 20], [30, 17], true, false],
    ['rank 4', [2, 3, 16, 24], [2, 3, 24, 18], false, false],
    ['rank 4 against rank 3 (leading 1s)', [1, 3, 16, 24], [3, 24, 18], false, false],
  ];
  for (const [what, aShape, bShape, transposeA, transposeB] of cases) {
    const calls = await assertNativeMatches(what, () =>
      tf.matMul(random(aShape, 5), random(bShape, 6), transposeA, transposeB),
    );
    assert.equal(calls, 1, `${what}: the native kernel ran`);
  }
});

test('matMul: what the native path leaves to the stock kernel', { skip }, async () => {
  // [2,1] against [1,3] batches is no single stride pattern; tiny products are not worth the call.
  assert.equal(
    await assertNativeMatches('cross broadcast', () =>
      tf.matMul(random([2, 1, 20, 20], 7), random([1, 3, 20, 20], 8)),
    ),
    0,
  );
  assert.equal(await assertNativeMatches('tiny', () => tf.matMul(random([4, 4], 9), random([4, 4], 10))), 0);
  enableNativeKernels(BLAS_ONLY);
  assert.throws(() => tf.matMul(tf.zeros([40, 30]), tf.zeros([31, 40])), /inner shapes \(30\) and \(31\)/);
});

test('matMul: an output larger than the heap is written after the heap grows', { skip }, async () => {
  // 4096² floats = 64 MiB: allocating the output grows wasm memory, which detaches any earlier view of it.
  await tf.setBackend('wasm');
  const heapBytes = () =>
    tf.tidy(() => (tf.backend() as BackendWasm).typedArrayFromHeap(tf.scalar(0)).buffer.byteLength);
  const before = heapBytes();
  const calls = await assertNativeMatches(
    'outer product',
    () => tf.matMul(random([4096, 2], 11), random([2, 4096], 12)),
    'cpu',
  );
  assert.equal(calls, 1);
  assert.ok(heapBytes() > before, `the wasm heap grew (${before} bytes before)`);
});

test('fused matMul: bias and activations', { skip }, async () => {
  const [M, K, N] = [33, 47, 25];
  const activations: tf.fused.Activation[] = [
    'linear',
    'relu',
    'relu6',
    'leakyrelu',
    'prelu',
    'sigmoid',
    'elu',
  ];
  for (const activation of activations) {
    for (const withBias of [false, true]) {
      const what = `${activation}${withBias ? ' + bias' : ''}`;
      const calls = await assertNativeMatches(what, () =>
        tf.fused.matMul({
          a: tf.mul(random([M, K], 13), 3),
          b: random([K, N], 14),
          bias: withBias ? random([N], 15) : undefined,
          activation,
          leakyreluAlpha: 0.1,
          preluActivationWeights: activation === 'prelu' ? random([N], 16) : undefined,
        }),
      );
      assert.equal(calls, 1, `${what}: native calls`);
    }
  }
});

test(
  'fused matMul: a bias is right batched or transposed, at every size (the stock wasm kernel is not)',
  { skip },
  async () => {
    // tfjs-backend-wasm 4.22 adds a bias correctly only to one product without transposes: compare with cpu.
    const cases: [number, number, number, number, boolean, boolean][] = [
      [1, 3, 4, 5, false, true],
      [1, 3, 4, 5, true, false],
      [2, 3, 4, 5, false, false],
      [3, 33, 47, 25, true, true],
    ];
    for (const [batch, M, K, N, transposeA, transposeB] of cases) {
      const what = `batch ${batch}, ${M}×${K}×${N}, transposeA=${transposeA}, transposeB=${transposeB}`;
      const compute = () =>
        tf.fused.matMul({
          a: random(transposeA ? [batch, K, M] : [batch, M, K], 24),
          b: random(transposeB ? [batch, N, K] : [batch, K, N], 25),
          transposeA,
          transposeB,
          bias: random([N], 26),
          activation: 'relu',
        });
      await tf.setBackend('cpu');
      const expected = tf.tidy(compute);
      await tf.setBackend('wasm');
      disableNativeKernels();
      const stock = tf.tidy(compute);
      enableNativeKernels(BLAS_ONLY);
      nativeCalls = 0;
      const actual = tf.tidy(compute);
      assert.equal(nativeCalls, 1, `${what}: native calls`);
      assertClose(actual, expected, `${what} (against cpu)`);
      const stockError = tf.tidy(() => tf.max(tf.abs(tf.sub(stock, expected))).dataSync()[0]);
      // When this fails, tfjs fixed its kernel: drop `stockIsWrong` in src/engine/native/fused_mat_mul.ts.
      assert.ok(stockError > 0.01, `${what}: the stock wasm kernel is off by ${stockError}`);
      tf.dispose([expected, stock, actual]);
    }
  },
);

test('gradients through native matMul equal the cpu backend', { skip }, async () => {
  const [M, K, N] = [24, 40, 32];
  const loss = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) => {
    const product = tf.matMul(a, b, false, true); // [M, N]
    const hidden = tf.fused.matMul({ a: product, b: random([N, N], 21), bias, activation: 'relu' });
    return tf.sum(tf.mul(hidden, random([M, N], 22)));
  };
  const gradients = () =>
    tf.grads((a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) => loss(a, b, bias))([
      random([M, K], 19),
      random([N, K], 20),
      random([N], 23),
    ]);
  const { expected, actual, calls } = await onCpuAndNative(gradients);
  assert.ok(calls >= 4, `native GEMMs in forward and backward: ${calls}`);
  expected.forEach((e, i) => assertClose(actual[i], e, `gradient ${i}`));
  tf.dispose([...expected, ...actual]);
});

interface ConvCase {
  what: string;
  x: number[]; // [batch, height, width, inChannels]
  filter: number[]; // [fH, fW, inChannels, outChannels]
  strides: number;
  pad: 'same' | 'valid' | number;
  dilations: number;
}

// Each is above MIN_CONV_MACS (2²³ multiply-adds) with at least MIN_FORWARD_DEPTH inputs per output.
/** A case: x [batch, height, width, inChannels], filter [fH, fW, inChannels, outChannels]. */
const conv = (
  what: string,
  x: number[],
  filter: number[],
  strides: number,
  pad: ConvCase['pad'],
  dilations = 1,
): ConvCase => ({ what, x, filter, strides, pad, dilations });

const CONV_CASES: ConvCase[] = [
  conv('3×3 same', [4, 16, 16, 33], [3, 3, 33, 35], 1, 'same'),
  conv('3×3 valid stride 2', [8, 21, 19, 40], [3, 3, 40, 48], 2, 'valid'),
  conv('5×5 same stride 2', [4, 23, 23, 20], [5, 5, 20, 40], 2, 'same'),
  conv('3×3 pad 1, dilation 2', [6, 16, 16, 24], [3, 3, 24, 40], 1, 1, 2),
  // outC a multiple of 4 up to 48 goes to native/blas.c's direct (AVX2) kernels where the CPU has them: forward
  // and filter gradient always, the input gradient at stride 1 when inC qualifies too.
  conv('3×3 same, 16 → 16 (direct)', [8, 24, 24, 16], [3, 3, 16, 16], 1, 'same'),
  conv(
    '3×3 same stride 2, 24 → 24 (direct forward and filter gradient)',
    [16, 23, 23, 24],
    [3, 3, 24, 24],
    2,
    'same',
  ),
  conv('5×5 valid, dilation 2, 8 → 32 (direct)', [8, 30, 30, 8], [5, 5, 8, 32], 1, 'valid', 2),
  conv(
    '3×3 same, 12 → 40 (direct, channel groups of 32 + 8 and 8 + 4)',
    [8, 24, 24, 12],
    [3, 3, 12, 40],
    1,
    'same',
  ),
  conv('1×1 pointwise', [4, 32, 32, 64], [1, 1, 64, 40], 1, 'valid'),
];

test(
  'conv2d: the direct kernels equal im2col + GEMM at every row width (blocks, half blocks, overlapped ends, single pixels)',
  { skip: skip || (blas && !blas.convDirect() ? 'the direct kernels need AVX2 and FMA' : false) },
  () => {
    const native = blas!;
    let checked = 0;
    /** y of one geometry (the addon's order, see convGeometry) both ways, compared. */
    const compare = (geometry: number[], what: string) => {
      const [N, H, W, inC, outH, outW, outC, fH, fW] = geometry;
      const x = Float32Array.from({ length: N * H * W * inC }, (_, i) => Math.sin(i * 0.37));
      const w = Float32Array.from({ length: fH * fW * inC * outC }, (_, i) => Math.cos(i * 0.11));
      const [direct, gemm] = [0, 1].map(() => new Float32Array(N * outH * outW * outC));
      native.convDirect(true);
      native.conv2d(x, w, direct, Int32Array.from(geometry));
      native.convDirect(false);
      native.conv2d(x, w, gemm, Int32Array.from(geometry));
      for (let i = 0; i < gemm.length; i++)
        assert.ok(
          Math.abs(direct[i] - gemm[i]) <= 1e-5 * (1 + Math.abs(gemm[i])),
          `${what}: y[${i}] = ${direct[i]}, im2col + GEMM ${gemm[i]}`,
        );
      checked += gemm.length;
    };
    try {
      // Output widths 1–19 reach every way a row ends: whole blocks of 8, 4, 3 or 2 pixels, a half block, a
      // block overlapping pixels already written, single pixels; outC 4, 8, 16, 24 and 44 pick each block kind.
      // 3×3 with 1 zero on each side ('same'), and 3×3 at dilation 2 with none ('valid', every tap inside).
      for (const [inC, outC] of [
        [1, 4],
        [4, 4],
        [5, 8],
        [3, 16],
        [8, 24],
        [2, 44],
      ])
        for (const stride of [1, 2])
          for (let outW = 1; outW <= 19; outW++) {
            const what = `${inC} → ${outC}, stride ${stride}, output width ${outW}`;
            const H = 3;
            // [N, H, W, inC, outH, outW, outC, fH, fW, strides, dilations, padTop, padLeft]
            compare(
              [2, H, outW * stride, inC, Math.ceil(H / stride), outW, outC, 3, 3, stride, stride, 1, 1, 1, 1],
              what,
            );
            const span = (n: number) => (n - 1) * stride + 5; // the input a dilated 3×3 needs for n outputs
            compare(
              [2, span(2), span(outW), inC, 2, outW, outC, 3, 3, stride, stride, 2, 2, 0, 0],
              `${what}, dilation 2, valid`,
            );
          }
      // Large enough for two threads (from 4 M multiply-adds), rows split between them.
      compare([16, 28, 28, 8, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1], 'two threads, 28 × 28, 8 → 8');
      compare([32, 13, 13, 16, 13, 13, 12, 3, 3, 1, 1, 1, 1, 1, 1], 'two threads, 13 × 13, 16 → 12');
    } finally {
      native.convDirect(true);
    }
    assert.ok(checked > 10_000);
  },
);

test('conv2d: forward against the stock wasm kernel', { skip }, async () => {
  for (const c of CONV_CASES) {
    const calls = await assertNativeMatches(c.what, () =>
      tf.conv2d(
        random(c.x, 30) as tf.Tensor4D,
        random(c.filter, 31) as tf.Tensor4D,
        c.strides,
        c.pad,
        'NHWC',
        c.dilations,
      ),
    );
    assert.equal(calls, 1, `${c.what}: native calls`);
  }
});

test('conv2d: fused bias + relu against the cpu backend', { skip }, async () => {
  for (const c of CONV_CASES) {
    const calls = await assertNativeMatches(
      c.what,
      () =>
        tf.fused.conv2d({
          x: random(c.x, 32) as tf.Tensor4D,
          filter: random(c.filter, 33) as tf.Tensor4D,
          strides: c.strides,
          pad: c.pad,
          dilations: c.dilations,
          bias: random([c.filter[3]], 34),
          activation: 'relu',
        }),
      'cpu',
    );
    assert.equal(calls, 1, `${c.what}: native calls`);
  }
});

test('conv2d: gradients for input and filter equal the cpu backend', { skip }, async () => {
  // Two cases keep the cpu backend's share of the test short: padding with stride, and the pointwise path.
  for (const c of CONV_CASES.filter((c) => c.what === '5×5 same stride 2' || c.what === '1×1 pointwise')) {
    // Σ sin(y): each output element gets its own gradient cos(y), bounded so that float32 sums over
    // thousands of pixels stay comparable at 1e-4.
    const gradients = () =>
      tf.grads((x: tf.Tensor, filter: tf.Tensor) =>
        tf.sum(tf.sin(tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, c.strides, c.pad))),
      )([random(c.x, 36), random(c.filter, 37)]);
    const { expected, actual, calls } = await onCpuAndNative(gradients);
    assert.equal(calls, 3, `${c.what}: forward, input and filter gradients on the native path`);
    assertClose(actual[0], expected[0], `${c.what}: dx`);
    assertClose(actual[1], expected[1], `${c.what}: dFilter`);
    tf.dispose([...expected, ...actual]);
  }
});

test(
  'conv2d: small convolutions stay on the stock kernels; thin filters go direct or stay stock',
  { skip },
  async () => {
    const small = () =>
      tf.conv2d(random([1, 8, 8, 8], 38) as tf.Tensor4D, random([3, 3, 8, 8], 39) as tf.Tensor4D, 1, 'same');
    assert.equal(await assertNativeMatches('small', small), 0);
    // An RGB input layer: 3×3×3 = 27 inputs per output is too thin a GEMM, but 32 outputs suit the direct
    // kernel where the CPU has AVX2; its filter gradient (K = 16·32·32 pixels) suits the GEMM.
    const x = random([16, 32, 32, 3], 40);
    const filter = random([3, 3, 3, 32], 41);
    assert.equal(
      await assertNativeMatches('RGB input layer', () =>
        tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, 1, 'same'),
      ),
      blas?.convDirect() ? 1 : 0,
    );
    nativeCalls = 0;
    tf.dispose(
      tf.grad((w: tf.Tensor) => tf.sum(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same')))(filter),
    );
    assert.equal(
      nativeCalls,
      blas?.convDirect() ? 2 : 1,
      'the filter gradient (and a direct forward) is native',
    );
    tf.dispose([x, filter]);
  },
);

test('conv2d: a convolution chunked into several im2col blocks (adjoint identities)', { skip }, async () => {
  // P·K = 8·32·32 pixels × 3·3·64 = 4.7 M column floats > native/blas.c's 1 M-float chunk; the chunk
  // boundary falls inside an image. <conv(x, w), dy> = <x, dx(dy, w)> = <w, dW(x, dy)> ties the three
  // kernels together; the forward one is also checked against the stock kernel.
  const x = random([8, 32, 32, 64], 42) as tf.Tensor4D;
  const w = random([3, 3, 64, 16], 43) as tf.Tensor4D;
  const dy = random([8, 32, 32, 16], 44) as tf.Tensor4D;
  assert.equal(await assertNativeMatches('forward', () => tf.conv2d(x, w, 1, 'same')), 1);
  nativeCalls = 0;
  const y = tf.conv2d(x, w, 1, 'same');
  const dx = tf.conv2dTranspose(dy, w, x.shape, 1, 'same');
  const dw = tf.grad((filter: tf.Tensor) =>
    tf.sum(tf.mul(tf.conv2d(x, filter as tf.Tensor4D, 1, 'same'), dy)),
  )(w);
  assert.equal(nativeCalls, 4, 'forward twice, input and filter gradients');
  const dot = (a: tf.Tensor, b: tf.Tensor) => {
    const [u, v] = [a.dataSync(), b.dataSync()];
    let sum = 0;
    let scale = 0;
    for (let i = 0; i < u.length; i++) {
      sum += u[i] * v[i];
      scale += Math.abs(u[i] * v[i]);
    }
    return { sum, scale };
  };
  const forward = dot(y, dy);
  for (const [what, other] of [
    ['<x, dx>', dot(x, dx)],
    ['<w, dW>', dot(w, dw)],
  ] as const) {
    const gap = Math.abs(other.sum - forward.sum);
    assert.ok(gap <= TOLERANCE * forward.scale, `${what} = ${other.sum}, <y, dy> = ${forward.sum}`);
  }
  tf.dispose([x, w, dy, y, dx, dw]);
});

test(
  'prefixMatMul: the native in-place prefix equals slice + matMul, value and both gradients',
  { skip },
  () => {
    enableNativeKernels(BLAS_ONLY);
    const x = random([5, 6], 50) as tf.Tensor2D;
    const w = random([9, 8], 51) as tf.Tensor2D;
    const dy = random([5, 4], 52);
    const reference = (xi: tf.Tensor, wi: tf.Tensor) =>
      tf.matMul(xi, tf.slice(wi, [0, 0], [4, 6]), false, true);
    const ours = (xi: tf.Tensor, wi: tf.Tensor) => prefixMatMul(xi as tf.Tensor2D, wi as tf.Tensor2D, 4);
    assert.ok(tf.getKernel('SortedNetPrefixMatMul', 'wasm'), 'the native kernel is registered');
    assertClose(ours(x, w), reference(x, w), 'value');
    const loss = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor) => (a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(f(a, b), dy));
    const [gx, gw] = tf.grads(loss(ours))([x, w]);
    const [rx, rw] = tf.grads(loss(reference))([x, w]);
    assertClose(gx, rx, 'dx');
    assert.deepEqual(gw.shape, [9, 8], 'the weight gradient has the full weight shape');
    assertClose(gw, rw, 'dW (zero outside the prefix)');
    // The whole weight: no prefix at all.
    const full = (xi: tf.Tensor, wi: tf.Tensor) => prefixMatMul(xi as tf.Tensor2D, wi as tf.Tensor2D, 9);
    assertClose(full(random([3, 8], 53), w), tf.matMul(random([3, 8], 53), w, false, true), 'full weight');
    assert.throws(
      () => prefixMatMul(x, w, 10, 'fc1'),
      /fc1: x \[5,6\] · W\[:10, :6\]ᵀ does not fit a weight of shape \[9,8\]/,
    );
  },
);
