/** Ops with hand-written gradients against tfjs autodiff of the plain formula. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { batchNormTrain } from '../src/engine/ops/batch_norm_train.js';
import { gelu } from '../src/engine/ops/gelu.js';
import { layerNorm } from '../src/engine/ops/layer_norm.js';
import { causalMask, scaledDotProductAttention } from '../src/engine/ops/scaled_dot_product_attention.js';
import { BatchNormTrain, BatchNormTrainGrad } from '../src/engine/kernels/batch_norm_train.js';
import { LayerNormFwd, LayerNormGrad } from '../src/engine/kernels/layer_norm.js';
import { disableNativeKernels, enableNativeKernels, loadNativeBlas } from '../src/engine/native/index.js';
import { assertClose } from './helpers.js';
import { assertCloseRelative } from './kernel_helpers.js';

before(async () => {
  await initEngine('wasm');
});

/**
 * The fused kernels through the native addon (where built), in JavaScript on wasm and cpu, and the composite
 * the ops fall back to where none is registered.
 */
const PATHS = ['wasm native', 'wasm js', 'cpu js', 'wasm composite'] as const;

function skipReason(path: (typeof PATHS)[number]): string | false {
  return path === 'wasm native' && !loadNativeBlas() ? 'native addon not built' : false;
}

async function onPath(path: (typeof PATHS)[number], kernels: string[], body: () => void): Promise<void> {
  const backend = path.startsWith('cpu') ? 'cpu' : 'wasm';
  await tf.setBackend(backend);
  const removed = path.endsWith('composite')
    ? kernels.map((k) => {
        const config = tf.getKernel(k, backend)!;
        tf.unregisterKernel(k, backend);
        return config;
      })
    : [];
  if (path === 'wasm js') disableNativeKernels();
  try {
    body();
  } finally {
    removed.forEach((config) => tf.registerKernel(config));
    enableNativeKernels();
    await tf.setBackend('wasm');
  }
}

const ACTIVATIONS = ['linear', 'relu', 'relu6'] as const;
const activate = (y: tf.Tensor, a: (typeof ACTIVATIONS)[number]) =>
  a === 'relu' ? tf.relu(y) : a === 'relu6' ? tf.relu6(y) : y;

for (const path of PATHS) {
  test(
    `batchNormTrain (${path}): value and gradients equal autodiff through tf.moments + tf.batchNorm, with a fused ReLU / ReLU6`,
    { skip: skipReason(path) },
    async () => {
      await onPath(path, [BatchNormTrain, BatchNormTrainGrad], () => {
        // The second shape (2 M values) is large enough for the native kernels to split rows over threads.
        const shapes: [number, number, number, number][] = [
          [3, 4, 5, 6],
          [8, 64, 64, 64],
        ];
        for (const shape of shapes)
          for (const activation of ACTIVATIONS) {
            const what = `${shape} ${activation}`;
            const C = shape[3];
            const x = tf.randomNormal(shape, 1, 2, 'float32', 1) as tf.Tensor4D;
            // γ about 3 so that ReLU6 clips some outputs at 6 as well.
            const g = tf.randomNormal([C], 3, 1, 'float32', 2) as tf.Tensor1D;
            const b = tf.randomNormal([C], 0, 1, 'float32', 3) as tf.Tensor1D;
            const w = tf.randomNormal(shape, 0, 1, 'float32', 4);
            // Unfused, the formula through tf.moments + tf.batchNorm; fused, this op unfused and then the tfjs
            // activation, so that both see the same outputs at the activation's kinks (2 M values have some
            // within rounding of 0).
            const reference = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => {
              if (activation !== 'linear')
                return activate(
                  batchNormTrain(xi as tf.Tensor4D, gi as tf.Tensor1D, bi as tf.Tensor1D, 1e-5),
                  activation,
                );
              const { mean, variance } = tf.moments(xi, [0, 1, 2]);
              return tf.batchNorm(xi, mean, variance, bi, gi, 1e-5);
            };
            const ours = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
              batchNormTrain(xi as tf.Tensor4D, gi as tf.Tensor1D, bi as tf.Tensor1D, 1e-5, activation);
            // Outputs reach ~15 here and tf.moments sums 32,768 rows in float32: 1e-5 absolute on the small shape.
            const tolerance = shape[0] > 3 ? 2e-4 : 1e-5;
            assertClose(ours(x, g, b), reference(x, g, b), tolerance, `value ${what}`);
            type Op = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => tf.Tensor;
            const loss = (f: Op) => (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
              tf.sum(tf.mul(f(xi, gi, bi), w));
            const ga = tf.grads(loss(ours))([x, g, b]);
            const gb = tf.grads(loss(reference))([x, g, b]);
            // Relative, and looser on the large shape: dγ and dβ sum 32,768 terms, the reference in float32.
            ['dx', 'dgamma', 'dbeta'].forEach((name, i) =>
              assertCloseRelative(ga[i], gb[i], `${name} ${what}`, shape[0] > 3 ? 1e-3 : 1e-4),
            );
            tf.dispose([x, g, b, w, ...ga, ...gb]);
          }
      });
    },
  );
}

for (const path of PATHS) {
  test(
    `batchNormTrain (${path}): γ and β longer than the channels act as their prefix; gradients are zero past it`,
    { skip: skipReason(path) },
    async () => {
      await onPath(path, [BatchNormTrain, BatchNormTrainGrad], () => {
        const x = tf.randomNormal([2, 3, 3, 4], 0, 1, 'float32', 11) as tf.Tensor4D;
        const g = tf.randomNormal([7], 1, 0.5, 'float32', 12) as tf.Tensor1D;
        const b = tf.randomNormal([7], 0, 1, 'float32', 13) as tf.Tensor1D;
        const w = tf.randomNormal([2, 3, 3, 4], 0, 1, 'float32', 14);
        const full = (gi: tf.Tensor, bi: tf.Tensor) =>
          tf.sum(tf.mul(batchNormTrain(x, gi as tf.Tensor1D, bi as tf.Tensor1D, 1e-5, 'relu'), w));
        const sliced = (gi: tf.Tensor, bi: tf.Tensor) => full(tf.slice(gi, 0, 4), tf.slice(bi, 0, 4));
        const [dg, db] = tf.grads(full)([g, b]);
        const [dgs, dbs] = tf.grads(sliced)([g, b]);
        assertClose(full(g, b), sliced(g, b), 1e-5, 'value');
        assert.deepEqual(dg.shape, [7]);
        assertClose(dg, dgs, 1e-5, 'dgamma');
        assertClose(db, dbs, 1e-5, 'dbeta');
        assert.deepEqual(Array.from(dg.dataSync().slice(4)), [0, 0, 0], 'dgamma past the prefix');
        assert.throws(
          () => batchNormTrain(x, tf.slice(g, 0, 3), tf.slice(b, 0, 3), 1e-5),
          /batchNormTrain: gamma\/beta have 3\/3 channels, input has 4/,
        );
      });
    },
  );
}

for (const path of PATHS) {
  test(
    `layerNorm (${path}): value and gradients equal autodiff through tf.moments, rank 3 and rank 2`,
    { skip: skipReason(path) },
    async () => {
      await onPath(path, [LayerNormFwd, LayerNormGrad], () => {
        for (const shape of [
          [2, 5, 8],
          [7, 3],
        ]) {
          const e = shape[shape.length - 1];
          const x = tf.randomNormal(shape, 0.5, 2, 'float32', 5);
          const g = tf.randomNormal([e], 1, 0.5, 'float32', 6) as tf.Tensor1D;
          const b = tf.randomNormal([e], 0, 1, 'float32', 7) as tf.Tensor1D;
          const w = tf.randomNormal(shape, 0, 1, 'float32', 8);
          const reference = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => {
            const { mean, variance } = tf.moments(xi, -1, true);
            return tf.add(tf.mul(tf.div(tf.sub(xi, mean), tf.sqrt(tf.add(variance, 1e-5))), gi), bi);
          };
          const ours = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
            layerNorm(xi, gi as tf.Tensor1D, bi as tf.Tensor1D, 1e-5);
          assertClose(ours(x, g, b), reference(x, g, b), 1e-5, `value ${shape}`);
          type Op = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => tf.Tensor;
          const loss = (f: Op) => (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
            tf.sum(tf.mul(f(xi, gi, bi), w));
          const ga = tf.grads(loss(ours))([x, g, b]);
          const gb = tf.grads(loss(reference))([x, g, b]);
          ['dx', 'dgamma', 'dbeta'].forEach((name, i) => assertClose(ga[i], gb[i], 1e-4, `${name} ${shape}`));
        }
      });
    },
  );
}

test('layerNorm: gamma of the wrong size is refused with the sizes in the message', () => {
  const x = tf.zeros([2, 4]);
  assert.throws(
    () => layerNorm(x, tf.ones([3]) as tf.Tensor1D, tf.zeros([4]) as tf.Tensor1D, 1e-5),
    /3\/4 features, input has 4/,
  );
});

test('gelu: value and gradient equal autodiff through the tanh formula', () => {
  const x = tf.randomNormal([4, 33], 0, 3, 'float32', 9);
  const w = tf.randomNormal([4, 33], 0, 1, 'float32', 10);
  const reference = (xi: tf.Tensor) => {
    const c = Math.sqrt(2 / Math.PI);
    const inner = tf.mul(tf.add(xi, tf.mul(tf.pow(xi, 3), 0.044715)), c);
    return tf.mul(tf.mul(xi, 0.5), tf.add(tf.tanh(inner), 1));
  };
  assertClose(gelu(x), reference(x), 1e-5, 'value');
  const ga = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(gelu(xi), w)))(x);
  const gb = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(reference(xi), w)))(x);
  assertClose(ga, gb, 1e-5, 'dx');
});

test('scaledDotProductAttention: value and gradients equal autodiff of softmax(q·kᵀ/√d + mask)·v', () => {
  for (const causal of [false, true]) {
    const [q, k, v] = [11, 12, 13].map((seed) =>
      tf.randomNormal([2, 3, 5, 4], 0, 1, 'float32', seed),
    ) as tf.Tensor4D[];
    const w = tf.randomNormal([2, 3, 5, 4], 0, 1, 'float32', 14);
    const reference = (qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) => {
      let s = tf.div(tf.matMul(qi, ki, false, true), 2);
      if (causal) s = tf.add(s, causalMask(5));
      return tf.matMul(tf.softmax(s), vi);
    };
    const ours = (qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor) =>
      scaledDotProductAttention(qi as tf.Tensor4D, ki as tf.Tensor4D, vi as tf.Tensor4D, { causal });
    assertClose(ours(q, k, v), reference(q, k, v), 1e-5, `value causal=${causal}`);
    type Op = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.Tensor;
    const loss = (f: Op) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(f(a, b, c), w));
    const ga = tf.grads(loss(ours))([q, k, v]);
    const gb = tf.grads(loss(reference))([q, k, v]);
    ['dq', 'dk', 'dv'].forEach((name, i) => assertClose(ga[i], gb[i], 1e-5, `${name} causal=${causal}`));
  }
  // The first query of a causal head sees only the first key: its output is v's first row.
  const [q, k, v] = [21, 22, 23].map((seed) =>
    tf.randomNormal([1, 1, 3, 2], 0, 1, 'float32', seed),
  ) as tf.Tensor4D[];
  const o = scaledDotProductAttention(q, k, v, { causal: true });
  assertClose(
    tf.slice(o, [0, 0, 0, 0], [1, 1, 1, 2]),
    tf.slice(v, [0, 0, 0, 0], [1, 1, 1, 2]),
    1e-6,
    'first row',
  );
});

test('scaledDotProductAttention: mismatched shapes are refused with the shapes in the message', () => {
  const q = tf.zeros([1, 2, 3, 4]) as tf.Tensor4D;
  assert.throws(
    () => scaledDotProductAttention(q, tf.zeros([1, 2, 3, 5]) as tf.Tensor4D, q),
    /q \[1,2,3,4\], k \[1,2,3,5\]/,
  );
});

test('training steps through the fused ops leave no tensors behind', () => {
  const x = tf.randomNormal([2, 4, 4, 8]) as tf.Tensor4D;
  const g = tf.variable(tf.ones([8]));
  const b = tf.variable(tf.zeros([8]));
  const q = tf.variable(tf.randomNormal([1, 2, 4, 8]));
  const step = () =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => {
        const bn = batchNormTrain(x, g as tf.Tensor1D, b as tf.Tensor1D, 1e-5);
        const ln = layerNorm(bn, g as tf.Tensor1D, b as tf.Tensor1D, 1e-5);
        const att = scaledDotProductAttention(q as tf.Tensor4D, q as tf.Tensor4D, q as tf.Tensor4D, {
          causal: true,
        });
        return tf.add(tf.sum(gelu(ln)), tf.sum(att)) as tf.Scalar;
      });
      value.dataSync();
      assert.equal(Object.keys(grads).length, 3);
    });
  step();
  const before = tf.memory().numTensors;
  step();
  step();
  assert.equal(tf.memory().numTensors, before);
});
