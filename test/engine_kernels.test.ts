/**
 * The kernels the project adds to the `wasm` backend (src/engine/kernels/), each checked against
 * the `cpu` backend's stock kernel on random inputs, through the gradients that call them.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { scaleShift } from '../src/engine/ops/scale_shift.js';
import { ScaleShift } from '../src/engine/kernels/scale_shift.js';
import { BatchNorm2d } from '../src/nn/batchnorm.js';
import { initEngine } from '../src/engine/backend.js';
import {
  replaceConv2DBackpropInputWasm,
  stockConv2DBackpropInputWasm,
} from '../src/engine/kernels/conv2d_backprop_input_wasm.js';
import { kernelsUsed, missingKernels } from '../src/engine/kernels_used.js';
import { keptTransposes } from '../src/engine/kernels/batch_mat_mul_wasm.js';
import { disableNativeKernels, enableNativeKernels } from '../src/engine/native/index.js';

import { assertCloseRelative, explicitPad, uniformValues } from './kernel_helpers.js';

const TOLERANCE = 1e-4;

before(async () => {
  // These tests are about the wasm kernels themselves, without the native BLAS wrappers on top.
  await initEngine('wasm', { native: false });
});

const random = uniformValues;

/**
 * Runs `compute` on `cpu` and on `wasm` (it must create its tensors itself, on the current
 * backend) and checks that every output agrees elementwise to TOLERANCE (relative above 1).
 */
async function assertSameOnBackends(label: string, compute: () => tf.Tensor[]): Promise<void> {
  const results: Record<string, { shape: number[]; values: Float32Array }[]> = {};
  for (const backend of ['cpu', 'wasm']) {
    await tf.setBackend(backend);
    results[backend] = tf.tidy(compute).map((t) => {
      const out = { shape: t.shape, values: t.dataSync() as Float32Array };
      t.dispose();
      return out;
    });
  }
  await tf.setBackend('wasm');
  const [cpu, wasm] = [results['cpu']!, results['wasm']!];
  assert.equal(wasm.length, cpu.length, `${label}: number of outputs`);
  cpu.forEach((expected, k) => {
    const actual = wasm[k]!;
    assert.deepEqual(actual.shape, expected.shape, `${label}: shape of output ${k}`);
    for (let i = 0; i < expected.values.length; ++i) {
      const e = expected.values[i]!;
      const a = actual.values[i]!;
      if (!(Math.abs(a - e) <= TOLERANCE * Math.max(1, Math.abs(e)))) {
        assert.fail(`${label}: output ${k} [${expected.shape}] differs at ${i}: wasm ${a}, cpu ${e}`);
      }
    }
  });
}

type Pad = 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]];
type Shape4 = [number, number, number, number];

const convCases: { x: Shape4; filter: Shape4; strides: number | [number, number]; pad: Pad }[] = [
  { x: [2, 7, 9, 3], filter: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { x: [2, 7, 9, 3], filter: [3, 3, 3, 4], strides: 2, pad: 'same' },
  { x: [3, 8, 7, 2], filter: [3, 2, 2, 5], strides: 2, pad: 'valid' }, // trailing rows unread
  { x: [1, 5, 5, 3], filter: [1, 1, 3, 2], strides: 1, pad: 'valid' },
  { x: [2, 6, 5, 2], filter: [5, 5, 2, 3], strides: 1, pad: 'same' },
  { x: [2, 9, 8, 3], filter: [3, 3, 3, 2], strides: [1, 2], pad: 'same' },
  {
    x: [2, 7, 6, 2],
    filter: [3, 3, 2, 3],
    strides: 2,
    pad: explicitPad(1, 2, 0, 1),
  },
];

/**
 * One parity case: the gradient of Σ op(x, filter)·upstream (a non-uniform dy) on wasm against cpu, for
 * both operands or for x alone (Conv2DBackpropInput's own cases).
 */
interface GradientCase {
  op: 'conv2d' | 'depthwiseConv2d';
  wrt: 'x and filter' | 'x';
  x: Shape4;
  filter: Shape4;
  strides: number | [number, number];
  pad: Pad;
}

function gradientParity(c: GradientCase, seed: number): () => tf.Tensor[] {
  return () => {
    const conv = (a: tf.Tensor, b: tf.Tensor) =>
      c.op === 'conv2d'
        ? tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad)
        : tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad as 'same' | 'valid');
    const x = tf.tensor4d(random(c.x, seed), c.x);
    const filter = tf.tensor4d(random(c.filter, seed + 100), c.filter);
    const y = conv(x, filter);
    const upstream = tf.tensor(random(y.shape, seed + 200), y.shape);
    const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv(a, b), upstream));
    return c.wrt === 'x' ? [tf.grad((a: tf.Tensor) => loss(a, filter))(x)] : tf.grads(loss)([x, filter]);
  };
}

/** Registers one test per case (the table is filled below, where each kernel's cases are). */
function gradientTests(kernels: string, cases: GradientCase[], seed: number): void {
  for (const [n, c] of cases.entries()) {
    const what = `${c.op} x [${c.x}] filter [${c.filter}] strides ${JSON.stringify(c.strides)} pad ${JSON.stringify(c.pad)}`;
    test(`${kernels} (wasm) matches cpu through the ${c.op} gradient wrt ${c.wrt}: ${what}`, () =>
      assertSameOnBackends(what, gradientParity(c, seed + n)));
  }
}

gradientTests(
  'Conv2DBackpropFilter',
  convCases.map((c) => ({ op: 'conv2d', wrt: 'x and filter', ...c })),
  0,
);

test('Conv2DBackpropFilter (wasm) is the kernel the conv2d gradient calls', async () => {
  const names = await kernelsUsed(() => {
    tf.tidy(() => {
      tf.grad((w: tf.Tensor) =>
        tf.sum(tf.conv2d(tf.ones([1, 4, 4, 2]) as tf.Tensor4D, w as tf.Tensor4D, 1, 'same')),
      )(tf.ones([3, 3, 2, 2]));
    });
  });
  assert.ok(names.includes('Conv2DBackpropFilter'), `the wasm run used ${names.join(', ')}`);
});

test('Conv2DBackpropFilter (wasm) frees its intermediates', () => {
  const x = tf.ones([2, 7, 7, 3]);
  const dy = tf.ones([2, 3, 3, 4]);
  const run = () =>
    tf.engine().runKernel(
      'Conv2DBackpropFilter',
      { x, dy },
      { strides: 2, pad: 'valid', dataFormat: 'NHWC', filterShape: [3, 3, 3, 4] }, // slices too
    ) as tf.Tensor;
  run().dispose(); // the first call may allocate lasting state
  const before = tf.engine().backend.numDataIds();
  run().dispose();
  assert.equal(tf.engine().backend.numDataIds(), before);
  tf.dispose([x, dy]);
});

test('Conv2DBackpropFilter (wasm) rejects NCHW with a clear error', () => {
  const x = tf.zeros([1, 2, 4, 4]);
  const dy = tf.zeros([1, 3, 4, 4]);
  assert.throws(
    () =>
      tf
        .engine()
        .runKernel(
          'Conv2DBackpropFilter',
          { x, dy },
          { strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 2, 3] },
        ),
    /dataFormat 'NCHW' is not supported/,
  );
  tf.dispose([x, dy]);
});

const depthwiseCases: { x: Shape4; filter: Shape4; strides: number; pad: 'same' | 'valid' }[] = [
  { x: [2, 7, 9, 3], filter: [3, 3, 3, 1], strides: 1, pad: 'same' },
  { x: [2, 7, 9, 3], filter: [3, 3, 3, 1], strides: 2, pad: 'same' },
  { x: [3, 8, 7, 4], filter: [3, 2, 4, 1], strides: 2, pad: 'valid' },
  { x: [2, 6, 5, 3], filter: [5, 5, 3, 1], strides: 1, pad: 'valid' },
  { x: [2, 7, 6, 2], filter: [3, 3, 2, 3], strides: 1, pad: 'same' }, // channel multiplier 3
  { x: [1, 9, 8, 3], filter: [3, 3, 3, 2], strides: 2, pad: 'valid' },
];

gradientTests(
  'DepthwiseConv2dNativeBackpropInput/Filter',
  depthwiseCases.map((c) => ({ op: 'depthwiseConv2d', wrt: 'x and filter', ...c })),
  0,
);

test('depthwise backprops (wasm) with dilation 2 equal the undilated ones of the zero-filled filter', () => {
  // tfjs's gradient refuses dilations > 1 and the cpu kernels ignore them, so the reference is
  // the identity: a 3x3 filter dilated by 2 is the 5x5 filter with zeros between its taps.
  const [kernel, dilated] = [3, 5];
  const x = tf.tensor4d(random([2, 8, 7, 3], 1), [2, 8, 7, 3]);
  const w = tf.tensor4d(random([kernel, kernel, 3, 2], 2), [kernel, kernel, 3, 2]);
  const wide = tf.buffer([dilated, dilated, 3, 2]);
  const wValues = w.dataSync();
  for (let i = 0; i < wValues.length; ++i) {
    // w is [3, 3, 3, 2]: i = ((p*3 + q)*3 + c)*2 + m
    wide.set(wValues[i]!, 2 * Math.floor(i / 18), 2 * (Math.floor(i / 6) % 3), Math.floor(i / 2) % 3, i % 2);
  }
  const wWide = wide.toTensor() as tf.Tensor4D;
  const dy = tf.tensor4d(random([2, 8, 7, 6], 3), [2, 8, 7, 6]);
  const attrs = { strides: 1, pad: 'same' };
  const run = (name: string, inputs: tf.NamedTensorMap, extra: tf.NamedAttrMap) =>
    tf.engine().runKernel(name, inputs, { ...attrs, ...extra }) as tf.Tensor;

  const dFilter = run(
    'DepthwiseConv2dNativeBackpropFilter',
    { x, dy },
    { dilations: 2, filterShape: w.shape },
  );
  const dFilterWide = run(
    'DepthwiseConv2dNativeBackpropFilter',
    { x, dy },
    { dilations: 1, filterShape: wWide.shape },
  );
  const taps = tf.stridedSlice(dFilterWide, [0, 0, 0, 0], [dilated, dilated, 3, 2], [2, 2, 1, 1]);
  assertClose(dFilter, taps, 'filter gradient, dilation 2');

  const dInput = run(
    'DepthwiseConv2dNativeBackpropInput',
    { dy, filter: w },
    { dilations: 2, inputShape: x.shape },
  );
  const dInputWide = run(
    'DepthwiseConv2dNativeBackpropInput',
    { dy, filter: wWide },
    { dilations: 1, inputShape: x.shape },
  );
  assertClose(dInput, dInputWide, 'input gradient, dilation 2');
  tf.dispose([x, w, wWide, dy, dFilter, dFilterWide, taps, dInput, dInputWide]);
});

const assertClose = (actual: tf.Tensor, expected: tf.Tensor, label: string) =>
  assertCloseRelative(actual, expected, label, TOLERANCE);

test('UnsortedSegmentSum (wasm) matches cpu: repeated, negative and out-of-range ids, 2-D ids', async () => {
  const cases: { x: number[]; ids: number[]; idsShape: number[]; numSegments: number }[] = [
    { x: [6, 4], ids: [0, 2, 2, 5, 1, 2], idsShape: [6], numSegments: 6 },
    { x: [6, 2, 3], ids: [3, -1, 0, 7, 3, 4], idsShape: [6], numSegments: 4 }, // -1, 7, 4 dropped
    { x: [2, 3, 4], ids: [1, 0, 1, 2, 2, 2], idsShape: [2, 3], numSegments: 3 },
    { x: [4], ids: [1, 1, 0, 1], idsShape: [4], numSegments: 2 },
  ];
  for (const [n, c] of cases.entries()) {
    await assertSameOnBackends(`unsortedSegmentSum ${JSON.stringify(c)}`, () => {
      let x = tf.tensor(random(c.x, n), c.x);
      let ids: tf.Tensor = tf.tensor(c.ids, c.idsShape, 'int32');
      if (tf.getBackend() === 'cpu' && ids.rank > 1) {
        // The cpu kernel cannot broadcast ids of rank > 1; flattening ids and x's leading dims
        // gives the same sums.
        x = tf.reshape(x, [ids.size, ...c.x.slice(ids.rank)]);
        ids = tf.reshape(ids, [ids.size]);
      }
      return [tf.unsortedSegmentSum(x, ids as tf.Tensor1D, c.numSegments)];
    });
  }
  await assertSameOnBackends('unsortedSegmentSum int32', () => [
    tf.unsortedSegmentSum(
      tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32'),
      tf.tensor1d([1, 1, 0], 'int32'),
      2,
    ),
  ]);
});

test('gather gradient (embedding lookup) on wasm matches cpu', async () => {
  const ids = [3, 0, 3, 7, 1, 3, 9, 0];
  await assertSameOnBackends('gather axis 0, ids [2, 4]', () => {
    const table = tf.tensor2d(random([10, 5], 1), [10, 5]);
    const indices = tf.tensor2d(ids, [2, 4], 'int32');
    const upstream = tf.tensor3d(random([2, 4, 5], 2), [2, 4, 5]);
    return [tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, indices), upstream)))(table)];
  });
  await assertSameOnBackends('gather axis 1', () => {
    const params = tf.tensor3d(random([2, 10, 3], 3), [2, 10, 3]);
    const indices = tf.tensor1d(ids, 'int32');
    const upstream = tf.tensor3d(random([2, 8, 3], 4), [2, 8, 3]);
    return [tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, indices, 1), upstream)))(params)];
  });
});

/** A conv + depthwise + embedding model: one loss whose gradient needs all four kernels. */
function smallModelGrads(): tf.Tensor[] {
  const v = (name: string, shape: number[], seed: number) =>
    tf.variable(tf.mul(tf.tensor(random(shape, seed), shape), 0.3), true, `${name}_${tf.getBackend()}`);
  const conv = v('conv', [3, 3, 3, 8], 1);
  const depthwise = v('depthwise', [3, 3, 8, 1], 2);
  const embedding = v('embedding', [12, 8], 3);
  const head = v('head', [8, 4], 4);
  const images = tf.tensor4d(random([2, 9, 9, 3], 5), [2, 9, 9, 3]);
  const tokens = tf.tensor2d([1, 5, 5, 11, 0, 2, 5, 7], [2, 4], 'int32');
  const labels = tf.oneHot(tf.tensor1d([1, 3], 'int32'), 4);
  const { value, grads } = tf.variableGrads(() => {
    let h = tf.relu(tf.conv2d(images, conv as tf.Tensor4D, 2, 'same')); // [2, 5, 5, 8]
    h = tf.relu(tf.depthwiseConv2d(h, depthwise as tf.Tensor4D, 1, 'same')); // [2, 5, 5, 8]
    const pooled = tf.mean(h, [1, 2]); // [2, 8]
    const embedded = tf.mean(tf.gather(embedding, tokens), 1); // [2, 8]
    const logits = tf.matMul(tf.add(pooled, embedded), head); // [2, 4]
    return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
  });
  const out = [value, ...[conv, depthwise, embedding, head].map((x) => grads[x.name]!)];
  tf.dispose([conv, depthwise, embedding, head]);
  return out;
}

test('a conv + depthwise + embedding training step runs on wasm and matches cpu', async () => {
  await tf.setBackend('wasm');
  const missing = missingKernels(await kernelsUsed(() => tf.dispose(smallModelGrads())), 'wasm');
  assert.deepEqual(missing, []);
  await assertSameOnBackends('small model variableGrads', smallModelGrads);
});

test('kernelsUsed lists the kernels of a gradient; missingKernels names the unregistered ones', async () => {
  await tf.setBackend('cpu');
  const names = await kernelsUsed(() => {
    tf.tidy(() => {
      tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, tf.tensor1d([0, 2], 'int32'))))(tf.ones([3, 2]));
    });
  });
  await tf.setBackend('wasm');
  assert.ok(names.includes('GatherV2') && names.includes('UnsortedSegmentSum'), names.join(', '));
  assert.deepEqual(names, [...names].sort());
  assert.equal(new Set(names).size, names.length);
  assert.deepEqual(missingKernels(['UnsortedSegmentSum', 'NoSuchKernel', 'Conv2DBackpropFilter'], 'wasm'), [
    'NoSuchKernel',
  ]);
});

const inputGradientCases: { x: Shape4; filter: Shape4; strides: number | [number, number]; pad: Pad }[] = [
  { x: [2, 7, 9, 3], filter: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { x: [3, 6, 5, 2], filter: [3, 3, 2, 3], strides: 1, pad: 'valid' },
  { x: [2, 6, 5, 2], filter: [5, 5, 2, 3], strides: 1, pad: 'same' },
  { x: [2, 8, 7, 3], filter: [5, 5, 3, 2], strides: 1, pad: 'valid' },
  { x: [2, 5, 5, 3], filter: [1, 1, 3, 4], strides: 1, pad: 'valid' },
  { x: [2, 7, 9, 3], filter: [3, 3, 3, 4], strides: 2, pad: 'same' },
  { x: [2, 8, 8, 3], filter: [3, 3, 3, 2], strides: 2, pad: 'same' }, // even size: pad 0 top, 1 bottom
  { x: [3, 8, 7, 2], filter: [3, 2, 2, 5], strides: 2, pad: 'valid' }, // trailing rows unread
  { x: [2, 7, 6, 3], filter: [1, 1, 3, 4], strides: 2, pad: 'valid' }, // dilation rows cut off
  { x: [2, 9, 7, 2], filter: [5, 5, 2, 3], strides: 2, pad: 'same' },
  { x: [2, 9, 8, 3], filter: [3, 3, 3, 2], strides: [1, 2], pad: 'same' },
  {
    x: [2, 7, 6, 2],
    filter: [3, 3, 2, 3],
    strides: 2,
    pad: explicitPad(1, 2, 0, 1),
  },
  {
    x: [2, 5, 6, 3],
    filter: [2, 2, 3, 2],
    strides: 1,
    pad: explicitPad(2, 3, 0, 2), // pads wider than the kernel: outputs that read only padding
  },
];

gradientTests(
  'Conv2DBackpropInput',
  inputGradientCases.map((c) => ({ op: 'conv2d', wrt: 'x', ...c })),
  300,
);

test('Conv2DBackpropInput (wasm) is the project kernel, not the stock one', () => {
  const kernel = tf.getKernel('Conv2DBackpropInput', 'wasm');
  assert.ok(kernel !== undefined && kernel.kernelFunc !== stockConv2DBackpropInputWasm()?.kernelFunc);
});

test('Conv2DBackpropInput (wasm) hands NCHW to the stock kernel', async () => {
  await assertSameOnBackends('conv2DBackpropInput NCHW', () => {
    const dy = tf.tensor4d(random([2, 3, 4, 5], 1), [2, 3, 4, 5]);
    const filter = tf.tensor4d(random([3, 3, 2, 3], 2), [3, 3, 2, 3]);
    const attrs = { strides: 1, pad: 'same', dataFormat: 'NCHW', inputShape: [2, 2, 4, 5] };
    return [tf.engine().runKernel('Conv2DBackpropInput', { dy, filter }, attrs) as tf.Tensor];
  });
});

test('Conv2DBackpropInput (wasm) frees its intermediates and replaces the stock kernel once', () => {
  const filter = tf.ones([1, 1, 3, 4]);
  const dy = tf.ones([2, 4, 3, 4]);
  const run = () =>
    tf.engine().runKernel(
      'Conv2DBackpropInput',
      { dy, filter },
      { strides: 2, pad: 'valid', dataFormat: 'NHWC', inputShape: [2, 7, 6, 3] }, // dilates, slices
    ) as tf.Tensor;
  run().dispose();
  const before = tf.engine().backend.numDataIds();
  run().dispose();
  assert.equal(tf.engine().backend.numDataIds(), before);
  tf.dispose([filter, dy]);

  const [ours, stock] = [tf.getKernel('Conv2DBackpropInput', 'wasm'), stockConv2DBackpropInputWasm()];
  replaceConv2DBackpropInputWasm();
  assert.equal(tf.getKernel('Conv2DBackpropInput', 'wasm')?.kernelFunc, ours?.kernelFunc);
  assert.equal(stockConv2DBackpropInputWasm(), stock);
  assert.notEqual(stock?.kernelFunc, ours?.kernelFunc);
});

test('Slice (wasm, runs of contiguous memory) equals the cpu backend: prefixes, corners, inner cuts, ranks 1–5', async () => {
  const cases: [number[], number[], number[]][] = [
    [[10], [2], [5]],
    [
      [1024, 784],
      [0, 0],
      [256, 784],
    ], // a row prefix: one run
    [
      [64, 48],
      [0, 0],
      [16, 12],
    ], // a corner: 16 runs
    [
      [3, 3, 16, 32],
      [0, 0, 0, 0],
      [3, 3, 4, 8],
    ], // a conv filter's sub-network
    [
      [4, 5, 6],
      [1, 2, 3],
      [2, 3, 2],
    ],
    [
      [2, 3, 4, 5, 6],
      [1, 0, 1, 2, 0],
      [1, 3, 2, 2, 6],
    ],
    [
      [5, 4],
      [2, 0],
      [0, 4],
    ], // empty
    [
      [6, 7],
      [1, 2],
      [-1, -1],
    ], // -1: to the end
  ];
  for (const [shape, begin, size] of cases) {
    for (const dtype of ['float32', 'int32'] as const) {
      await tf.setBackend('cpu');
      const values = Array.from({ length: tf.util.sizeFromShape(shape) }, (_, i) => (i * 7) % 101);
      const expected = tf.slice(tf.tensor(values, shape, dtype), begin, size);
      const want = { shape: expected.shape, data: Array.from(expected.dataSync()) };
      await tf.setBackend('wasm');
      const got = tf.slice(tf.tensor(values, shape, dtype), begin, size);
      assert.deepEqual(got.shape, want.shape, `shape of ${shape} [${begin}] [${size}]`);
      assert.deepEqual(
        Array.from(got.dataSync()),
        want.data,
        `values of ${shape} [${begin}] [${size}] ${dtype}`,
      );
    }
  }
  assert.throws(() => tf.slice(tf.zeros([4, 4]), [0, 3], [2, 2]), /slice/i);
});

test('GatherV2 (wasm, rows of axis 0) equals the cpu backend; other axes and bad indices as before', async () => {
  const cases: [number[], number[], number[], number][] = [
    [[10, 4], [3], [7, 0, 9], 0],
    [[2048, 6], [8, 1], [5, 0, 2047, 5, 9, 1, 1, 3], 0], // an embedding lookup [B, 1]
    [[5, 2, 3], [2, 2], [4, 0, 0, 1], 0],
    [[7], [4], [6, 1, 0, 6], 0], // rank 1: scalars
    [[3, 5], [2], [4, 1], 1], // axis 1: the stock kernel
    [[4, 3], [0], [], 0], // no indices
  ];
  for (const [shape, idShape, ids, axis] of cases) {
    for (const dtype of ['float32', 'int32'] as const) {
      const values = Array.from({ length: tf.util.sizeFromShape(shape) }, (_, i) => (i * 7) % 101);
      await tf.setBackend('cpu');
      const expected = tf.gather(tf.tensor(values, shape, dtype), tf.tensor(ids, idShape, 'int32'), axis);
      const want = { shape: expected.shape, data: Array.from(expected.dataSync()) };
      await tf.setBackend('wasm');
      const got = tf.gather(tf.tensor(values, shape, dtype), tf.tensor(ids, idShape, 'int32'), axis);
      assert.deepEqual(got.shape, want.shape, `shape of ${shape} [${ids}] axis ${axis}`);
      assert.deepEqual(
        Array.from(got.dataSync()),
        want.data,
        `values of ${shape} [${ids}] axis ${axis} ${dtype}`,
      );
    }
  }
  assert.throws(
    () => tf.gather(tf.zeros([4, 2]), tf.tensor1d([1, 4], 'int32')),
    /index value 4 is not in \[0, 3\]/,
  );
  assert.throws(() => tf.gather(tf.zeros([4, 2]), tf.tensor1d([-1], 'int32')), /index value -1/);
});

test('BatchMatMul (wasm, portable): transposed operands equal the cpu backend, batched and broadcast', async () => {
  disableNativeKernels(); // the portable kernel underneath the native one
  try {
    const cases: [number[], number[]][] = [
      [
        [5, 7],
        [7, 3],
      ],
      [
        [2, 4, 6],
        [2, 6, 5],
      ],
      [
        [3, 33, 40],
        [1, 40, 17],
      ], // b broadcast over the batch; sizes not multiples of the 32-block
    ];
    for (const [aShape, bShape] of cases) {
      for (const [ta, tb] of [
        [false, true],
        [true, false],
        [true, true],
      ] as const) {
        const swap = (s: number[], t: boolean) =>
          t ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s;
        const [sa, sb] = [swap(aShape, ta), swap(bShape, tb)];
        const va = Array.from({ length: tf.util.sizeFromShape(sa) }, (_, i) => Math.sin(i));
        const vb = Array.from({ length: tf.util.sizeFromShape(sb) }, (_, i) => Math.cos(i));
        await tf.setBackend('cpu');
        const want = tf.matMul(tf.tensor(va, sa), tf.tensor(vb, sb), ta, tb);
        const expected = { shape: want.shape, data: want.dataSync() };
        await tf.setBackend('wasm');
        const got = tf.matMul(tf.tensor(va, sa), tf.tensor(vb, sb), ta, tb);
        assert.deepEqual(got.shape, expected.shape);
        const data = got.dataSync();
        const worst = Math.max(...Array.from(data, (v, i) => Math.abs(v - expected.data[i])));
        assert.ok(worst < 1e-4, `${sa} × ${sb} (transposeA ${ta}, transposeB ${tb}): max |diff| ${worst}`);
      }
    }
  } finally {
    enableNativeKernels();
  }
});

test('BatchMatMul (wasm, portable): an operand transposed again is kept until its data is freed', async () => {
  disableNativeKernels();
  try {
    await tf.setBackend('wasm');
    const base = keptTransposes();
    const w = tf.tensor(uniformValues([40, 24], 3), [40, 24]);
    const xs = [1, 2, 3, 4].map((seed) => tf.tensor(uniformValues([3, 24], seed), [3, 24]));
    const want = xs.map((x) => tf.tidy(() => tf.matMul(x, tf.transpose(w)).dataSync()));
    const bytes = tf.memory().numBytes;
    // First use: copied and dropped; from the second on, one kept copy; the values never differ.
    xs.forEach((x, i) => {
      const got = tf.tidy(() => tf.matMul(x, w, false, true).dataSync());
      assert.deepEqual(got, want[i], `product ${i}`);
      assert.equal(keptTransposes() - base, i === 0 ? 0 : 1, `kept after product ${i}`);
    });
    // A sub-model's prefix is a fresh slice every step, of the same region: kept from its second step too,
    // apart from the whole weight's copy; another region gets its own.
    for (const [rows, cols] of [
      [33, 20],
      [33, 20],
      [33, 20],
      [16, 24],
    ]) {
      const got = tf.tidy(() =>
        tf.matMul(xs[0].slice([0, 0], [3, cols]), w.slice([0, 0], [rows, cols]), false, true),
      );
      const want2 = tf.tidy(() =>
        tf.matMul(xs[0].slice([0, 0], [3, cols]), tf.transpose(w.slice([0, 0], [rows, cols]))),
      );
      assert.deepEqual(got.dataSync(), want2.dataSync(), `prefix [${rows}, ${cols}]`);
      tf.dispose([got, want2]);
    }
    assert.equal(keptTransposes() - base, 2, 'the whole weight and its [33, 20] prefix');
    // A reshape shares the data under another shape: it gets its own transpose, not the kept one.
    const flat = tf.reshape(w, [24, 40]);
    const other = tf.tidy(() => tf.matMul(tf.ones([2, 40]), flat, false, true).dataSync());
    const otherWant = tf.tidy(() => tf.matMul(tf.ones([2, 40]), tf.transpose(flat)).dataSync());
    assert.deepEqual(other, otherWant);
    flat.dispose();
    assert.equal(tf.memory().numBytes, bytes, 'no tensor left behind');
    assert.equal(keptTransposes() - base, 2, 'kept while the weight lives');
    w.dispose();
    assert.equal(keptTransposes() - base, 0, 'freed with the weight');
    tf.dispose(xs);
  } finally {
    enableNativeKernels();
  }
});

test('Identity (wasm) shares memory safely: a clone outlives its source and ignores later assigns', async () => {
  await tf.setBackend('wasm');
  const before = tf.memory().numTensors;
  const [init, next] = [tf.tensor1d([1, 2, 3]), tf.tensor1d([7, 8, 9])];
  const v = tf.variable(init);
  const snapshot = tf.clone(v);
  v.assign(next);
  assert.deepEqual(Array.from(snapshot.dataSync()), [1, 2, 3], 'the clone keeps the old values');
  const a = tf.tensor2d([1, 2, 3, 4], [2, 2]);
  const b = tf.clone(a);
  a.dispose();
  const reuse = tf.fill([2, 2], 42); // would land in a's memory had the clone not kept it alive
  assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3, 4], 'the clone survives its source');
  reuse.dispose();
  // A gradient whose tape saved (cloned) its inputs still computes after those inputs are gone.
  const x = tf.tensor1d([0.5, -1, 2]);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(t, t)))(x);
  assert.deepEqual(Array.from(g.dataSync()), [1, -2, 4]);
  tf.dispose([snapshot, b, x, g, init, next]);
  v.dispose();
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
});

for (const backend of ['wasm', 'cpu']) {
  // On wasm the kernel is the native addon's; without it the op composes stock kernels (checked too).
  test(`ScaleShift (${backend}) equals x·scale + shift then the activation, bit for bit`, async () => {
    await tf.setBackend(backend);
    const native = backend === 'wasm' && enableNativeKernels().kernels.includes(ScaleShift);
    assert.equal(tf.getKernel(ScaleShift, backend) !== undefined, backend === 'cpu' || native);
    tf.tidy(() => {
      const x = tf.mul(tf.randomNormal([3, 5, 4, 7], 0, 1, 'float32', 1), 4);
      const scale = tf.randomNormal([7], 0, 2, 'float32', 2) as tf.Tensor1D;
      const shift = tf.randomNormal([7], 0, 3, 'float32', 3) as tf.Tensor1D;
      for (const activation of ['linear', 'relu', 'relu6'] as const) {
        const y = tf.add(tf.mul(x, scale), shift);
        const want = activation === 'relu' ? tf.relu(y) : activation === 'relu6' ? tf.relu6(y) : y;
        assert.deepEqual(scaleShift(x, scale, shift, activation).dataSync(), want.dataSync(), activation);
      }
      assert.throws(() => scaleShift(x, tf.ones([6]) as tf.Tensor1D, shift), /scale and shift must be \[7\]/);
    });
    await tf.setBackend('wasm');
  });
}

test('BatchNorm2d in evaluation folds its statistics once per sub-model, equals batch norm, and refolds when they or γ, β change', () => {
  tf.tidy(() => {
    const bn = new BatchNorm2d(8, 'bn');
    const calibrate = { mode: 'calibrate', key: 'c4' } as const;
    const evaluate = { mode: 'eval', key: 'c4' } as const;
    const x = tf.randomNormal([6, 3, 3, 4], 1, 2, 'float32', 4) as tf.Tensor4D;
    bn.forward(x, calibrate); // statistics of sub-model 'c4' over its 4 channels
    bn.gamma.assign(tf.randomNormal([8], 1, 0.3, 'float32', 5));
    bn.beta.assign(tf.randomNormal([8], 0, 0.3, 'float32', 6));
    const reference = () => {
      const s = bn.statsFor('c4')!;
      const g = tf.slice(bn.gamma, [0], [4]);
      const b = tf.slice(bn.beta, [0], [4]);
      return tf.relu(tf.batchNorm(x, s.mean, s.variance, b, g, bn.epsilon));
    };
    const close = (got: tf.Tensor, want: tf.Tensor, what: string) =>
      want.dataSync().forEach((v, i) => assert.ok(Math.abs(got.dataSync()[i] - v) < 1e-5, `${what} at ${i}`));
    close(bn.forward(x, evaluate, 'relu'), reference(), 'folded');
    const tensors = tf.memory().numTensors;
    bn.forward(x, evaluate, 'relu').dispose();
    assert.equal(tf.memory().numTensors, tensors, 'a second run reuses the folded scale and shift');
    // New parameters (an optimizer step assigns them) and new statistics are both seen.
    bn.gamma.assign(tf.mul(bn.gamma, 2));
    close(bn.forward(x, evaluate, 'relu'), reference(), 'after γ changed');
    bn.beta.assign(tf.add(bn.beta, 1));
    close(bn.forward(x, evaluate, 'relu'), reference(), 'after β changed');
    bn.forward(tf.mul(x, 3) as tf.Tensor4D, calibrate); // a second batch moves the average
    close(bn.forward(x, evaluate, 'relu'), reference(), 'after recalibration');
    // Under a gradient tape the composed form runs, so γ gets its gradient.
    const grads = tf.variableGrads(() => tf.sum(bn.forward(x, evaluate)) as tf.Scalar, [bn.gamma, bn.beta]);
    assert.ok(tf.sum(tf.abs(grads.grads[bn.beta.name])).dataSync()[0] > 0, 'β has a gradient in evaluation');
    bn.resetStats();
    assert.throws(() => bn.forward(x, evaluate), /no statistics for sub-model 'c4'/);
  });
});
