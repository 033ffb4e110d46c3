/**
 * The oneDNN convolutions for the wasm backend (native/dnnl/, src/engine/native/dnnl*.ts): every case of the
 * table runs forward, input gradient and filter gradient on oneDNN and on the portable kernels and must
 * agree to 1e-4 relative; the prefix convolution's gradients are also checked by finite differences, and a
 * sorted network's weights after 3 SGD steps must equal the portable path's. Skipped, with the reason, when
 * the addon is not built.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import {
  describeNativeKernels,
  disableNativeKernels,
  enableNativeKernels,
  loadNativeDnnl,
  nativeDnnlUnavailableReason,
} from '../src/engine/native/index.js';
import { DnnlPass, dnnlGeometry, hwioStrides } from '../src/engine/native/dnnl.js';
import { dnnlLimits } from '../src/engine/native/dnnl_conv2d.js';
import { prefixConv2d } from '../src/engine/ops/prefix_conv2d.js';
import { addRelu } from '../src/engine/ops/add_relu.js';
import { Conv2d } from '../src/nn/conv2d.js';

import { assertCloseRelative, countCalls, explicitPad, uniformTensor } from './kernel_helpers.js';

const TOLERANCE = 1e-4;
const dnnl = loadNativeDnnl();
const skip = dnnl ? false : `oneDNN kernels unavailable: ${nativeDnnlUnavailableReason()}`;
/** oneDNN calls since the last reset, counted by wrapping the addon's `conv`. */
let dnnlCalls = 0;
const minMacs = dnnlLimits.minMacs;

before(async () => {
  await initEngine('wasm');
  // Every size through oneDNN: the table's shapes are small so that the portable reference stays quick.
  dnnlLimits.minMacs = 0;
  if (dnnl) countCalls(dnnl, ['conv'], () => dnnlCalls++);
});

after(() => {
  dnnlLimits.minMacs = minMacs;
  disableNativeKernels();
});

const random = uniformTensor;
const assertClose = (actual: tf.Tensor, expected: tf.Tensor, what: string) =>
  assertCloseRelative(actual, expected, what, TOLERANCE);

/**
 * Runs `compute` on the portable kernels and on oneDNN in each of its layouts (NHWC data, and blocked with
 * reorders); each returned tensor must agree. Returns the oneDNN calls of one run.
 */
function assertDnnlMatches(what: string, compute: () => tf.Tensor[]): number {
  disableNativeKernels();
  const expected = tf.tidy(compute);
  assert.ok(enableNativeKernels().dnnl, 'oneDNN is on');
  let calls = 0;
  for (const layout of ['blocked', 'nhwc'] as const) {
    dnnl!.layout(layout);
    dnnlCalls = 0;
    const actual = tf.tidy(compute);
    calls = dnnlCalls;
    actual.forEach((a, i) => assertClose(a, expected[i], `${what} (${layout}), output ${i}`));
    tf.dispose(actual);
  }
  tf.dispose(expected);
  return calls;
}

type Pad = 'same' | 'valid' | tf.backend_util.ExplicitPadding;
interface Case {
  what: string;
  kind:
    | 'conv'
    | 'depthwise'
    | 'fused relu + bias'
    | 'fused relu6'
    | 'fused depthwise + bias + relu6'
    | 'prefix'
    | 'prefix + bias + relu'
    | 'prefix + bias + relu6'
    | 'prefix + relu';
  x: number[]; // [batch, height, width, inChannels]
  filter: number[]; // conv, prefix: [fH, fW, in, out] (prefix: the full weight); depthwise: [fH, fW, C, multiplier]
  strides: number;
  pad: Pad;
  /** prefix: output channels used (the input channels are x's). */
  out?: number;
  /** 2 and more: forward only (tfjs has no gradient for dilated convolutions). */
  dilations?: number;
}

/** A 3×3 'same' convolution's steps and padding in the addon's geometry. */
const STRIDE_1_PAD_1 = {
  ...{ strideH: 1, strideW: 1, dilationH: 1, dilationW: 1 },
  ...{ padTop: 1, padLeft: 1, padBottom: 1, padRight: 1 },
};

/** A case of the table: kind and name, then x, filter, stride and padding as in `Case`. */
const row = (
  kind: Case['kind'],
  what: string,
  x: number[],
  filter: number[],
  strides: number,
  pad: Pad,
  more: Pick<Case, 'out' | 'dilations'> = {},
): Case => ({ what, kind, x, filter, strides, pad, ...more });

const CASES: Case[] = [
  row('conv', '3×3 same', [2, 8, 8, 4], [3, 3, 4, 8], 1, 'same'),
  row('conv', 'odd sizes, stride 2 same', [2, 9, 7, 3], [3, 3, 3, 5], 2, 'same'),
  row('conv', 'stride 2 valid, rows left over', [1, 10, 11, 6], [3, 3, 6, 4], 2, 'valid'),
  row('conv', '1×1 stride 2', [2, 8, 8, 16], [1, 1, 16, 8], 2, 'valid'),
  row('conv', '5×3 filter, batch 1', [1, 7, 9, 2], [5, 3, 2, 3], 1, 'same'),
  row('conv', 'explicit padding', [2, 6, 7, 3], [3, 3, 3, 4], 1, explicitPad(1, 2, 2, 0)),
  row('conv', 'dilation 2', [2, 9, 9, 3], [3, 3, 3, 4], 1, 'same', { dilations: 2 }),
  row('conv', 'wide channels', [2, 6, 6, 40], [3, 3, 40, 36], 1, 'same'),
  row('depthwise', 'depthwise 3×3 same', [2, 8, 8, 6], [3, 3, 6, 1], 1, 'same'),
  row('depthwise', 'depthwise multiplier 2, stride 2 valid', [1, 9, 9, 4], [3, 3, 4, 2], 2, 'valid'),
  row('fused relu + bias', 'bias + relu', [2, 8, 8, 4], [3, 3, 4, 8], 1, 'same'),
  row('fused relu6', 'relu6, stride 2', [2, 9, 9, 5], [3, 3, 5, 6], 2, 'same'),
  row('fused depthwise + bias + relu6', 'stride 2 same', [2, 9, 9, 6], [3, 3, 6, 1], 2, 'same'),
  row('prefix', 'prefix in and out', [2, 8, 8, 5], [3, 3, 8, 12], 1, 'same', { out: 7 }),
  row('prefix', 'prefix, stride 2 valid, batch 1', [1, 9, 9, 3], [3, 3, 6, 4], 2, 'valid', { out: 2 }),
  row('prefix', 'prefix of outputs only', [2, 6, 6, 4], [1, 1, 4, 9], 1, 'same', { out: 5 }),
  row('prefix', 'prefix = whole weight', [2, 6, 6, 4], [3, 3, 4, 6], 1, 'same', { out: 6 }),
  row('prefix + bias + relu', 'prefix in and out', [2, 8, 8, 5], [3, 3, 8, 12], 1, 'same', { out: 7 }),
  row('prefix + bias + relu6', 'stride 2 valid, batch 1', [1, 9, 9, 3], [3, 3, 6, 4], 2, 'valid', { out: 2 }),
  row('prefix + relu', 'whole weight, no bias', [2, 6, 6, 4], [3, 3, 4, 6], 1, 'same', { out: 6 }),
];

/** The fusion of the prefix kinds that have one. */
const FUSIONS: Partial<Record<Case['kind'], { bias: boolean; activation: 'relu' | 'relu6' }>> = {
  'prefix + bias + relu': { bias: true, activation: 'relu' },
  'prefix + bias + relu6': { bias: true, activation: 'relu6' },
  'prefix + relu': { bias: false, activation: 'relu' },
};

/** y = the case's convolution of (x, w); `bias` for the fused kinds. */
function forward(c: Case, x: tf.Tensor, w: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  const [x4, w4] = [x as tf.Tensor4D, w as tf.Tensor4D];
  const dilations = c.dilations ?? 1;
  switch (c.kind) {
    case 'conv':
      return tf.conv2d(x4, w4, c.strides, c.pad, 'NHWC', dilations);
    case 'depthwise':
      return tf.depthwiseConv2d(x4, w4, c.strides, c.pad as 'same' | 'valid', 'NHWC', dilations);
    case 'fused relu + bias':
      return tf.fused.conv2d({ x: x4, filter: w4, strides: c.strides, pad: c.pad, bias, activation: 'relu' });
    case 'fused relu6':
      return tf.fused.conv2d({ x: x4, filter: w4, strides: c.strides, pad: c.pad, activation: 'relu6' });
    case 'fused depthwise + bias + relu6':
      // Scaled up so that ReLU6 clips some outputs at 6 too.
      return tf.fused.depthwiseConv2d({
        x: tf.mul(x4, 3),
        filter: w4,
        strides: c.strides,
        pad: c.pad as 'same' | 'valid',
        bias,
        activation: 'relu6',
      });
    case 'prefix':
      return prefixConv2d(x4, w4, c.out!, c.strides, c.pad as 'same' | 'valid');
    default: {
      const f = FUSIONS[c.kind]!;
      // Scaled up so that ReLU6 clips some outputs at 6 too.
      const fusion = { bias: f.bias ? (bias as tf.Tensor1D) : null, activation: f.activation };
      return prefixConv2d(tf.mul(x4, 3), w4, c.out!, c.strides, c.pad as 'same' | 'valid', 'conv', fusion);
    }
  }
}

for (const c of CASES) {
  test(`oneDNN ${c.kind}: ${c.what} equals the portable kernels (value, dx, dW, db)`, { skip }, () => {
    const backward = (c.dilations ?? 1) === 1;
    const compute = () => {
      const x = random(c.x, 1);
      const w = random(c.filter, 2);
      // Per output channel: a depthwise filter [fH, fW, C, M] has C·M of them.
      const bias = random([c.kind.includes('depthwise') ? c.filter[2] * c.filter[3] : c.filter[3]], 3);
      const y = forward(c, x, w, bias);
      if (!backward) return [y];
      // Σ y·r gives each output its own gradient.
      const r = random(y.shape, 4);
      if (FUSIONS[c.kind]?.bias) {
        const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
          tf.sum(tf.mul(forward(c, a, b, d), r)),
        );
        const [dx, dw, db] = grads([x, w, bias]);
        return [y, dx, dw, db];
      }
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(forward(c, a, b, bias), r)))([
        x,
        w,
      ]);
      return [y, dx, dw];
    };
    const calls = assertDnnlMatches(c.what, compute);
    assert.equal(
      calls,
      backward ? 4 : 1,
      `${c.what}: forward (twice with the gradients), dx and dW on oneDNN`,
    );
  });
}

test('oneDNN grouped convolution (2 groups) equals two convolutions on the channel halves', { skip }, () => {
  // tfjs has no grouped conv2d op, so this calls the addon directly: [fH, fW, in/G, out] weights, out channels
  // of group g contiguous, as TensorFlow lays them out.
  const [B, H, W, IN, OUT, G] = [2, 6, 6, 4, 6, 2];
  const x = random([B, H, W, IN], 5) as tf.Tensor4D;
  const w = random([3, 3, IN / G, OUT], 6) as tf.Tensor4D;
  const expected = tf.concat(
    [0, 1].map((g) =>
      tf.conv2d(
        tf.slice(x, [0, 0, 0, (g * IN) / G], [-1, -1, -1, IN / G]),
        tf.slice(w, [0, 0, 0, (g * OUT) / G], [-1, -1, -1, OUT / G]),
        1,
        'same',
      ),
    ),
    3,
  );
  const geometry = dnnlGeometry({
    ...{ batch: B, inH: H, inW: W, inC: IN, outH: H, outW: W, outC: OUT, fH: 3, fW: 3 },
    ...STRIDE_1_PAD_1,
    groups: G,
    // (group, out, in, fH, fW) in [fH, fW, in/G, out]
    weightStrides: [OUT / G, 1, OUT, 3 * (IN / G) * OUT, (IN / G) * OUT],
  });
  const y = new Float32Array(B * H * W * OUT);
  dnnl!.conv(DnnlPass.forward, geometry, x.dataSync() as Float32Array, w.dataSync() as Float32Array, y);
  assertClose(tf.tensor(y, expected.shape), expected, 'grouped');
});

test('oneDNN addon: arrays shorter than the geometry needs are refused', { skip }, () => {
  const geometry = dnnlGeometry({
    ...{ batch: 1, inH: 4, inW: 4, inC: 2, outH: 4, outW: 4, outC: 3, fH: 3, fW: 3 },
    ...STRIDE_1_PAD_1,
    groups: 1,
    weightStrides: hwioStrides(3, 2, 3),
  });
  const [x, w, y] = [new Float32Array(32), new Float32Array(54), new Float32Array(48)];
  assert.doesNotThrow(() => dnnl!.conv(DnnlPass.forward, geometry, x, w, y));
  assert.throws(
    () => dnnl!.conv(DnnlPass.forward, geometry, x, w.subarray(1), y),
    /weights holds 53 floats, the geometry needs 54/,
  );
  assert.throws(() => dnnl!.conv(DnnlPass.filter, geometry, x, y, w.subarray(2)), /dW holds 52 floats/);
  assert.throws(() => dnnl!.conv(3, geometry, x, w, y), /pass must be 0/);
  // With the bias flag, the forward pass needs a bias of outC floats.
  const biased = dnnlGeometry({
    ...{ batch: 1, inH: 4, inW: 4, inC: 2, outH: 4, outW: 4, outC: 3, fH: 3, fW: 3 },
    ...STRIDE_1_PAD_1,
    groups: 1,
    weightStrides: hwioStrides(3, 2, 3),
    bias: true,
  });
  assert.throws(
    () => dnnl!.conv(DnnlPass.forward, biased, x, w, y, new Float32Array(2)),
    /bias holds 2 floats/,
  );
  // The elementwise functions take arrays of one length.
  const [a4, b4, c3] = [new Float32Array(4), new Float32Array(4), new Float32Array(3)];
  assert.throws(() => dnnl!.addRelu(a4, b4, c3), /addRelu: a, b and y must be Float32Arrays of one length/);
  assert.throws(
    () => dnnl!.activationGrad(1, a4, c3, b4),
    /activationGrad: dy, y and dx must be Float32Arrays of one length/,
  );
  assert.throws(() => dnnl!.activationGrad(3, a4, b4, a4), /activationGrad: expected \(kind 1 relu/);
});

test(
  'prefixConv2d: gradients agree with finite differences, and dW is zero outside the prefix',
  { skip },
  () => {
    enableNativeKernels();
    const x = random([2, 5, 5, 3], 7) as tf.Tensor4D;
    const w = random([3, 3, 5, 6], 8) as tf.Tensor4D;
    const r = random([2, 3, 3, 4], 9);
    const loss = (xi: tf.Tensor, wi: tf.Tensor) =>
      tf.sum(tf.mul(prefixConv2d(xi as tf.Tensor4D, wi as tf.Tensor4D, 4, 2, 'same'), r));
    dnnlCalls = 0;
    const [dx, dw] = tf.grads(loss)([x, w]);
    assert.equal(dnnlCalls, 3, 'forward, dx and dW on oneDNN');
    assert.deepEqual(dw.shape, [3, 3, 5, 6], 'the filter gradient has the full weight shape');
    const eps = 1e-2;
    const probe = (t: tf.Tensor, grad: tf.Tensor, which: 0 | 1, indices: number[]) => {
      const g = grad.dataSync();
      for (const i of indices) {
        const values = t.dataSync().slice();
        const at = (delta: number) => {
          const v = values.slice();
          v[i] += delta;
          const moved = tf.tensor(v, t.shape);
          return tf.tidy(() => (which === 0 ? loss(moved, w) : loss(x, moved)).dataSync()[0]);
        };
        const numeric = (at(eps) - at(-eps)) / (2 * eps);
        assert.ok(
          Math.abs(numeric - g[i]) <= 1e-2 * Math.max(1, Math.abs(numeric)),
          `${which === 0 ? 'dx' : 'dW'}[${i}]: analytic ${g[i]}, numeric ${numeric}`,
        );
      }
    };
    probe(x, dx, 0, [0, 17, 44, 100, 149]);
    // dW [3, 3, 5, 6]: index (kh, kw, i, o) = ((kh·3 + kw)·5 + i)·6 + o; inside the prefix i < 3, o < 4.
    const inside = [0, 1 * 6 + 3, (4 * 5 + 2) * 6 + 1, (8 * 5 + 2) * 6 + 3];
    const outside = [4, (1 * 5 + 3) * 6, (8 * 5 + 4) * 6 + 5];
    probe(w, dw, 1, [...inside, ...outside]);
    for (const i of outside) assert.equal(dw.dataSync()[i], 0, `dW[${i}] outside the prefix`);
    assert.throws(
      () => prefixConv2d(x, w, 4, 2, 'same', 'stem', { bias: tf.zeros([3]) as tf.Tensor1D }),
      /stem: a bias of shape \[3\] does not cover the 4 output channels/,
    );
    assert.throws(
      () => prefixConv2d(x, w, 7, 1, 'same', 'stem'),
      /stem: conv2d\(x \[2,5,5,3\], W\[:, :, :3, :7\]\) does not fit a weight of shape \[3,3,5,6\]/,
    );
  },
);

test('a sorted network after 3 SGD steps at 3 widths has the portable path weights', { skip }, () => {
  const train = () =>
    tf.tidy(() => {
      let seed = 11;
      const next = () => seed++;
      const conv1 = new Conv2d(3, 8, 3, next, { name: 'conv1' });
      const conv2 = new Conv2d(8, 6, 3, next, { stride: 2, name: 'conv2' });
      const x = random([4, 8, 8, 3], 12) as tf.Tensor4D;
      const target = random([4, 4, 4, 6], 13);
      const params = [conv1.weight, conv2.weight];
      // Each step trains one sub-network: widths 4/3, 8/6 (the whole network) and 2/2.
      for (const [w1, w2] of [
        [4, 3],
        [8, 6],
        [2, 2],
      ]) {
        const { grads } = tf.variableGrads(() => {
          const y = conv2.forward(tf.relu(conv1.forward(x, w1)), w2);
          const t = tf.slice(target, [0, 0, 0, 0], [-1, -1, -1, w2]);
          return tf.mean(tf.square(tf.sub(y, t)));
        }, params);
        for (const p of params) p.assign(tf.sub(p, tf.mul(grads[p.name], 0.1)));
      }
      return params.map((p) => tf.clone(p));
    });
  disableNativeKernels();
  const expected = train();
  enableNativeKernels();
  dnnlCalls = 0;
  const actual = train();
  assert.ok(dnnlCalls >= 3 * 5, `the prefix convolutions ran on oneDNN (${dnnlCalls} calls)`);
  actual.forEach((a, i) => assertClose(a, expected[i], `weight ${i}`));
  tf.dispose([...actual, ...expected]);
});

test('without oneDNN the prefix convolution slices and runs the portable conv2d', () => {
  disableNativeKernels();
  assert.equal(tf.getKernel('SortedNetPrefixConv2D', 'wasm'), undefined);
  const x = random([1, 4, 4, 2], 14) as tf.Tensor4D;
  const w = random([3, 3, 3, 5], 15) as tf.Tensor4D;
  assertClose(
    prefixConv2d(x, w, 4, 1, 'same'),
    tf.conv2d(x, tf.slice(w, [0, 0, 0, 0], [-1, -1, 2, 4]), 1, 'same'),
    'slice + conv2d',
  );
});

test(
  'status: with oneDNN its kernels are registered and named; without, convolutions stay on OpenBLAS',
  { skip },
  () => {
    const on = enableNativeKernels();
    assert.ok(on.dnnl?.startsWith('oneDNN 2.'), String(on.dnnl));
    for (const k of ['DepthwiseConv2dNative', 'SortedNetPrefixConv2D', 'SortedNetPrefixConv2DGradFilter'])
      assert.ok(on.kernels.includes(k), `${k} in ${on.kernels.join(', ')}`);
    assert.match(describeNativeKernels(), /oneDNN: on \(oneDNN 2\.\d+\.\d+; \d+ threads/);
    const off = enableNativeKernels({ dnnl: false });
    assert.ok(!off.kernels.includes('SortedNetPrefixConv2D'));
    assert.equal(tf.getKernel('SortedNetPrefixConv2D', 'wasm'), undefined);
    assert.match(describeNativeKernels(), /oneDNN: off \(disabled\)/);
  },
);

test('below the size limit a prefix convolution slices onto the kernels underneath', { skip }, () => {
  enableNativeKernels();
  const x = random([1, 6, 6, 3], 16) as tf.Tensor4D;
  const w = random([3, 3, 4, 5], 17) as tf.Tensor4D;
  dnnlLimits.minMacs = 1 << 22;
  dnnlCalls = 0;
  const small = prefixConv2d(x, w, 4, 1, 'same');
  assert.equal(dnnlCalls, 0, '6·6·9·3·4 multiply-adds stay off oneDNN');
  dnnlLimits.minMacs = 0;
  const forced = prefixConv2d(x, w, 4, 1, 'same');
  assert.equal(dnnlCalls, 1);
  assertClose(forced, small, 'the same value either way');
});

test(
  'addRelu on oneDNN equals relu(a + b), value and both gradients; shape mismatches are refused',
  { skip },
  () => {
    // A small shape, and one large enough (2 M values) to be split over threads.
    for (const shape of [
      [2, 8, 8, 4],
      [8, 64, 64, 64],
    ]) {
      const compute = () => {
        const a = random(shape, 21);
        const b = random(shape, 22);
        const r = random(shape, 23);
        const y = addRelu(a, b);
        const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(addRelu(p, q), r)))([a, b]);
        return [y, da, db];
      };
      assertDnnlMatches(`addRelu ${shape}`, compute);
      assert.ok(tf.getKernel('SortedNetAddRelu', 'wasm'), 'the native kernel ran');
    }
    assert.throws(
      () => addRelu(tf.zeros([2, 3]), tf.zeros([3, 2])),
      /addRelu: shapes \[2,3\] and \[3,2\] differ/,
    );
  },
);
