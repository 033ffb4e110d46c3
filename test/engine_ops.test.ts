/** Ops with hand-written gradients against tfjs autodiff of the plain formula. */
import { test, before } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { batchNormTrain } from '../src/engine/ops/batch_norm_train.js';
import { assertClose } from './helpers.js';

before(async () => {
  await initEngine('wasm');
});

test('batchNormTrain: value and gradients equal autodiff through tf.moments + tf.batchNorm', () => {
  const x = tf.randomNormal([3, 4, 5, 6], 1, 2, 'float32', 1) as tf.Tensor4D;
  const g = tf.randomNormal([6], 1, 0.5, 'float32', 2) as tf.Tensor1D;
  const b = tf.randomNormal([6], 0, 1, 'float32', 3) as tf.Tensor1D;
  const w = tf.randomNormal([3, 4, 5, 6], 0, 1, 'float32', 4);
  const reference = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => {
    const { mean, variance } = tf.moments(xi, [0, 1, 2]);
    return tf.batchNorm(xi, mean, variance, bi, gi, 1e-5);
  };
  const ours = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
    batchNormTrain(xi as tf.Tensor4D, gi as tf.Tensor1D, bi as tf.Tensor1D, 1e-5);
  assertClose(ours(x, g, b), reference(x, g, b), 1e-5, 'value');
  type Op = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => tf.Tensor;
  const loss = (f: Op) => (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => tf.sum(tf.mul(f(xi, gi, bi), w));
  const ga = tf.grads(loss(ours))([x, g, b]);
  const gb = tf.grads(loss(reference))([x, g, b]);
  ['dx', 'dgamma', 'dbeta'].forEach((name, i) => assertClose(ga[i], gb[i], 1e-4, name));
});
