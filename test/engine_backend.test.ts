/** Backend selection: names are checked; webgpu either runs or fails with a message saying what to do. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, parseBackend, engineDescription } from '../src/engine/backend.js';

test('parseBackend accepts the three backends and rejects others clearly', () => {
  assert.equal(parseBackend('wasm'), 'wasm');
  assert.equal(parseBackend('cpu'), 'cpu');
  assert.equal(parseBackend('webgpu'), 'webgpu');
  assert.throws(
    () => parseBackend('webgl', '--backend'),
    /--backend: unknown backend 'webgl'; choose one of wasm, cpu, webgpu/,
  );
});

test('wasm initialises and says whether the native kernels are on', async () => {
  assert.equal(await initEngine('wasm'), 'wasm');
  assert.match(engineDescription(), /^backend wasm; native BLAS: (on|off)/);
});

test('webgpu: a matmul agrees with wasm, or initialisation fails with a clear message (no GPU)', async () => {
  await initEngine('wasm');
  const a = [
    [1, 2],
    [3, 4],
  ];
  const want = tf.matMul(a, a).arraySync();
  try {
    await initEngine('webgpu');
  } catch (e) {
    assert.match((e as Error).message, /failed to initialise on this machine|needs a WebGPU implementation/);
    return;
  }
  assert.deepEqual(await tf.matMul(a, a).array(), want);
});
