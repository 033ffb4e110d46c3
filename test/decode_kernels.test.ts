/**
 * The fused kernels of a decoding step (src/engine/kernels/rotary.ts, rms_norm.ts) against the
 * stock-kernel compositions they replace, forward and through their gradients, on wasm and cpu.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { rotate } from '../src/engine/ops/rotary.js';
import { rmsNorm } from '../src/engine/ops/rms_norm.js';
import { Rotary } from '../src/engine/kernels/rotary.js';
import { RmsNormFwd } from '../src/engine/kernels/rms_norm.js';

before(async () => {
  await initEngine('wasm');
});

/** Deterministic uniform values in [-1, 1). */
function random(shape: number[], seed: number): tf.Tensor {
  let state = seed * 2654435761 + 1;
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < values.length; ++i) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    values[i] = state / 2 ** 31 - 1;
  }
  return tf.tensor(values, shape);
}

/** The stock composition: x·cos + rotate_half(x)·sin, rotate_half([a, b]) = [−b, a]. */
function rotateStock(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  const d = x.shape[x.rank - 1];
  const [a, b] = tf.split(x, [d / 2, d / 2], x.rank - 1);
  return tf.add(tf.mul(x, cos), tf.mul(tf.concat([tf.neg(b), a], x.rank - 1), sin));
}

function rmsStock(x: tf.Tensor, g: tf.Tensor, eps: number): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), g);
}

for (const backend of ['wasm', 'cpu']) {
  test(`rotary kernel (${backend}) equals the stock composition bit for bit, and its gradient is the inverse rotation`, async () => {
    await tf.setBackend(backend);
    tf.tidy(() => {
      const [B, h, T, d] = [2, 3, 5, 8];
      const x = random([B, h, T, d], 1);
      const angles = tf.mul(random([T, d / 2], 2), 7);
      const cos = tf.concat([tf.cos(angles), tf.cos(angles)], 1) as tf.Tensor2D;
      const sin = tf.concat([tf.sin(angles), tf.sin(angles)], 1) as tf.Tensor2D;
      assert.ok(tf.getKernel(Rotary, backend), 'the fused kernel is registered');
      const y = rotate(x, cos, sin);
      assert.deepEqual(y.dataSync(), rotateStock(x, cos, sin).dataSync());
      // Rotating back restores x (up to rounding).
      const back = rotate(y, cos, sin, true).dataSync();
      x.dataSync().forEach((v, i) => assert.ok(Math.abs(back[i] - v) < 1e-5, `inverse at ${i}`));
      const w = random([B, h, T, d], 3);
      const dFused = tf
        .grad((t: tf.Tensor) => tf.sum(tf.mul(rotate(t, cos, sin), w)))(x)
        .dataSync();
      const dStock = tf
        .grad((t: tf.Tensor) => tf.sum(tf.mul(rotateStock(t, cos, sin), w)))(x)
        .dataSync();
      dStock.forEach((v, i) =>
        assert.ok(Math.abs(dFused[i] - v) < 1e-5, `gradient at ${i}: ${dFused[i]} vs ${v}`),
      );
    });
    await tf.setBackend('wasm');
  });

  test(`RMSNorm kernel (${backend}) matches the stock composition, forward and gradients`, async () => {
    await tf.setBackend(backend);
    tf.tidy(() => {
      const x = tf.mul(random([4, 3, 16], 4), 3);
      const g = tf.add(random([16], 5), 1.5) as tf.Tensor1D;
      const w = random([4, 3, 16], 6);
      assert.ok(tf.getKernel(RmsNormFwd, backend), 'the fused kernel is registered');
      const close = (a: Float32Array | Int32Array | Uint8Array, b: typeof a, what: string) =>
        b.forEach((v, i) =>
          assert.ok(
            Math.abs(a[i] - v) <= 1e-5 * Math.max(1, Math.abs(v)),
            `${what} at ${i}: ${a[i]} vs ${v}`,
          ),
        );
      close(rmsNorm(x, g, 1e-6).dataSync(), rmsStock(x, g, 1e-6).dataSync(), 'y');
      const loss = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor) => (a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(f(a, b), w));
      const [dxF, dgF] = tf.grads(loss((a, b) => rmsNorm(a, b as tf.Tensor1D, 1e-6)))([x, g]);
      const [dxS, dgS] = tf.grads(loss((a, b) => rmsStock(a, b, 1e-6)))([x, g]);
      close(dxF.dataSync(), dxS.dataSync(), 'dx');
      close(dgF.dataSync(), dgS.dataSync(), 'dgamma');
    });
    await tf.setBackend('wasm');
  });
}
