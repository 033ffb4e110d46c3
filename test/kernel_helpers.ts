/** What the kernel parity tests share: deterministic inputs, a relative comparison, call counting. */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';

/** Deterministic uniform values in [-1, 1). */
export function uniformValues(shape: number[], seed: number): Float32Array {
  let state = seed * 2654435761 + 1;
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < values.length; ++i) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    values[i] = state / 2 ** 31 - 1;
  }
  return values;
}

/** `uniformValues` as a tensor of that shape, on the current backend. */
export const uniformTensor = (shape: number[], seed: number): tf.Tensor =>
  tf.tensor(uniformValues(shape, seed), shape);

/** Same shape, and every element within `tolerance`, relative above magnitude 1. */
export function assertCloseRelative(
  actual: tf.Tensor,
  expected: tf.Tensor,
  what: string,
  tolerance: number,
): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const a = actual.dataSync();
  const e = expected.dataSync();
  for (let i = 0; i < e.length; i++) {
    const tol = tolerance * Math.max(1, Math.abs(e[i]));
    if (!(Math.abs(a[i] - e[i]) <= tol)) assert.fail(`${what}: element ${i} is ${a[i]}, expected ${e[i]}`);
  }
}

/** Wraps the addon functions `names` so that each call first runs `count`: proves which path ran. */
export function countCalls(addon: object, names: readonly string[], count: () => void): void {
  const functions = addon as Record<string, (...args: unknown[]) => void>;
  for (const name of names) {
    const call = functions[name].bind(addon);
    functions[name] = (...args) => {
      count();
      call(...args);
    };
  }
}

/** NHWC explicit padding: rows above and below, columns left and right. */
export const explicitPad = (
  top: number,
  bottom: number,
  left: number,
  right: number,
): [[0, 0], [number, number], [number, number], [0, 0]] => [
  [0, 0],
  [top, bottom],
  [left, right],
  [0, 0],
];
