/**
 * The fused kernels of a decoding step (src/engine/kernels/rotary.ts, rms_norm.ts, cached_attention.ts)
 * against the stock-kernel compositions they replace, forward and through their gradients, on wasm
 * (the native addon's kernels where it is built) and cpu (the JavaScript ones).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { rotate } from '../src/engine/ops/rotary.js';
import { rmsNorm } from '../src/engine/ops/rms_norm.js';
import { Rotary } from '../src/engine/kernels/rotary.js';
import { RmsNormFwd } from '../src/engine/kernels/rms_norm.js';
import { cachedAttention } from '../src/engine/ops/cached_attention.js';
import { CachedAttention } from '../src/engine/kernels/cached_attention.js';

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

/**
 * Attention of n new positions over a cache of `past`, composed of stock kernels: the cache's first
 * `past` positions concatenated with the new ones, key/value heads repeated, causal among the new.
 */
function attendStock(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  cache: { k: tf.Tensor4D; v: tf.Tensor4D },
  past: number,
  mask?: tf.Tensor,
): tf.Tensor {
  const [B, h, n, d] = q.shape;
  const kvh = k.shape[1];
  const held = (t: tf.Tensor4D, x: tf.Tensor4D) =>
    tf.concat([tf.slice(t, [0, 0, 0, 0], [B, kvh, past, d]), x], 2);
  const heads = tf.tensor1d(
    Array.from({ length: h }, (_, j) => Math.floor(j / (h / kvh))),
    'int32',
  );
  const K = tf.gather(held(cache.k, k), heads, 1);
  const V = tf.gather(held(cache.v, v), heads, 1);
  const causal = new Float32Array(n * (past + n));
  for (let i = 0; i < n; i++) for (let t = past + i + 1; t < past + n; t++) causal[i * (past + n) + t] = -1e9;
  let s = tf.add(tf.mul(tf.matMul(q, K, false, true), 1 / Math.sqrt(d)), tf.tensor2d(causal, [n, past + n]));
  if (mask) s = tf.add(s, mask);
  return tf.transpose(tf.matMul(tf.softmax(s), V), [0, 2, 1, 3]); // [B, n, h, d]
}

for (const backend of ['wasm', 'cpu']) {
  test(`cached attention (${backend}) writes the new keys and values in place and attends as the stock composition`, async (t) => {
    await tf.setBackend(backend);
    // On wasm the kernel is the native addon's (without it decoding concatenates; see the kernel's file).
    if (!tf.getKernel(CachedAttention, backend)) {
      t.skip('no native kernels on wasm');
      return;
    }
    // Grouped-query (4 query heads on 2 key/value heads), several new positions, a padding mask, and
    // a head size that is not a multiple of any vector width.
    for (const [B, h, kvh, n, d, C, past, masked] of [
      [2, 4, 2, 3, 12, 16, 5, true],
      [3, 2, 2, 1, 8, 9, 8, false],
      [1, 3, 1, 4, 5, 8, 0, false],
      [2, 6, 3, 1, 32, 70, 40, true],
    ] as const) {
      tf.tidy(() => {
        const q = random([B, h, n, d], 11) as tf.Tensor4D;
        const k = random([B, kvh, n, d], 12) as tf.Tensor4D;
        const v = random([B, kvh, n, d], 13) as tf.Tensor4D;
        const cache = {
          k: random([B, kvh, C, d], 14) as tf.Tensor4D,
          v: random([B, kvh, C, d], 15) as tf.Tensor4D,
        };
        const before = { k: cache.k.arraySync(), v: cache.v.arraySync() };
        // Row b hides its first b keys (a left-padded batch).
        const m = new Float32Array(B * (past + n));
        if (masked)
          for (let b = 0; b < B; b++)
            for (let t = 0; t < Math.min(b, past); t++) m[b * (past + n) + t] = -1e9;
        const mask = masked ? tf.tensor4d(m, [B, 1, 1, past + n]) : undefined;
        const want = attendStock(q, k, v, cache, past, mask).dataSync();
        const got = cachedAttention(q, k, v, cache, past, mask);
        assert.deepEqual(got.shape, [B, n, h, d]);
        got
          .dataSync()
          .forEach((x, i) =>
            assert.ok(
              Math.abs(x - want[i]) < 1e-5,
              `[${B},${h},${kvh},${n},${d}] past ${past}: output ${i} ${x} vs ${want[i]}`,
            ),
          );
        // The new positions landed at past..past+n−1; every other position is as it was.
        const [ka, va, kn, vn] = [cache.k.arraySync(), cache.v.arraySync(), k.arraySync(), v.arraySync()];
        for (let b = 0; b < B; b++)
          for (let j = 0; j < kvh; j++)
            for (let t = 0; t < C; t++) {
              const fresh = t >= past && t < past + n;
              assert.deepEqual(
                ka[b][j][t],
                fresh ? kn[b][j][t - past] : before.k[b][j][t],
                `k [${b},${j},${t}]`,
              );
              assert.deepEqual(
                va[b][j][t],
                fresh ? vn[b][j][t - past] : before.v[b][j][t],
                `v [${b},${j},${t}]`,
              );
            }
      });
    }
    // Positions that do not fit are refused with the sizes.
    tf.tidy(() => {
      const cache = { k: tf.zeros([1, 1, 4, 2]) as tf.Tensor4D, v: tf.zeros([1, 1, 4, 2]) as tf.Tensor4D };
      const x = tf.zeros([1, 1, 2, 2]) as tf.Tensor4D;
      assert.throws(() => cachedAttention(x, x, x, cache, 3), /positions 0\.\.4 do not fit 4/);
    });
    await tf.setBackend('wasm');
  });
}
