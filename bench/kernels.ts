/**
 * The project's kernels against what they replace, side by side in one process (docs/performance.md):
 *  - Slice and transposed BatchMatMul on the portable wasm path vs tfjs's stock wasm kernels;
 *  - training batch norm: the JavaScript kernels vs the native addon's.
 *
 *   node dist/bench/kernels.js
 */
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { disableNativeKernels, enableNativeKernels, loadNativeBlas } from '../src/engine/native/index.js';
import { stockSliceWasm } from '../src/engine/kernels/slice_wasm.js';
import { stockBatchMatMulWasm } from '../src/engine/kernels/batch_mat_mul_wasm.js';
import { BatchNormTrain, BatchNormTrainGrad } from '../src/engine/kernels/batch_norm_train.js';
import { medianMs as timedMedian } from '../src/train/timing.js';
import { benchCommand, parseBench } from './cli.js';

parseBench(benchCommand('kernels', "the project's kernels vs the ones they replace, one process"));
await initEngine('wasm', { native: false });

/** Median of `reps` timed calls after three warm-ups. */
const medianMs = (fn: () => void, reps: number) => timedMedian(fn, reps, 3);

/** Times fn with `stock` registered in place of the project's kernel, then with the project's, alternating. */
function versus(kernelName: string, stock: tf.KernelConfig | undefined, fn: () => void): [number, number] {
  const ours = tf.getKernel(kernelName, 'wasm');
  if (!stock || !ours) throw new Error(`${kernelName}: no stock or project kernel to compare`);
  const times: [number[], number[]] = [[], []];
  for (let round = 0; round < 3; round++) {
    for (const [i, config] of [stock, ours].entries()) {
      tf.unregisterKernel(kernelName, 'wasm');
      tf.registerKernel(config);
      times[i].push(medianMs(fn, 7));
    }
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[1];
  return [median(times[0]), median(times[1])];
}

const rows: string[] = [];
const row = (what: string, a: number, b: number, labels: [string, string]) =>
  rows.push(
    `| ${what} | ${labels[0]} ${a.toFixed(2)} ms | ${labels[1]} ${b.toFixed(2)} ms | ${(a / b).toFixed(1)}× |`,
  );

{
  const w = tf.randomNormal([1024, 784]);
  const [a, b] = versus(tf.Slice, stockSliceWasm(), () => tf.slice(w, [0, 0], [256, 784]).dispose());
  row('Slice: [256, 784] prefix of [1024, 784]', a, b, ['stock', 'project']);
  const v = tf.randomNormal([1024, 1024]);
  const [c, d] = versus(tf.Slice, stockSliceWasm(), () => tf.slice(v, [0, 0], [256, 256]).dispose());
  row('Slice: [256, 256] corner of [1024, 1024]', c, d, ['stock', 'project']);
}
{
  const x = tf.randomNormal([64, 784]);
  const w = tf.randomNormal([1024, 784]);
  const dy = tf.randomNormal([64, 1024]);
  const [a, b] = versus(tf.BatchMatMul, stockBatchMatMulWasm(), () => tf.matMul(x, w, false, true).dispose());
  row('BatchMatMul x·Wᵀ, 64×784 · (1024×784)ᵀ', a, b, ['stock', 'project']);
  const [c, d] = versus(tf.BatchMatMul, stockBatchMatMulWasm(), () =>
    tf.matMul(dy, x, true, false).dispose(),
  );
  row('BatchMatMul dyᵀ·x (weight gradient)', c, d, ['stock', 'project']);
}
if (loadNativeBlas()) {
  for (const shape of [
    [64, 28, 28, 4],
    [64, 28, 28, 16],
    [64, 7, 7, 64],
  ]) {
    const C = shape[3];
    const [x, dy] = [tf.randomNormal(shape), tf.randomNormal(shape)];
    const [g, b] = [tf.ones([C]), tf.zeros([C])];
    const engine = tf.engine();
    const forward = () =>
      tf.dispose(engine.runKernel(BatchNormTrain, { x, gamma: g, beta: b }, { epsilon: 1e-5 }));
    const [, mean, rstd] = engine.runKernel(
      BatchNormTrain,
      { x, gamma: g, beta: b },
      { epsilon: 1e-5 },
    ) as tf.Tensor[];
    const backward = () => tf.dispose(engine.runKernel(BatchNormTrainGrad, { dy, x, mean, rstd, gamma: g }));
    for (const [pass, fn] of [
      ['forward', forward],
      ['backward', backward],
    ] as const) {
      const t: [number[], number[]] = [[], []];
      for (let round = 0; round < 3; round++) {
        disableNativeKernels();
        t[0].push(medianMs(fn, 7));
        enableNativeKernels();
        t[1].push(medianMs(fn, 7));
      }
      const median = (xs: number[]) => xs.sort((p, q) => p - q)[1];
      row(`batch norm ${pass}, [${shape}]`, median(t[0]), median(t[1]), ['JavaScript', 'native']);
    }
  }
} else {
  rows.push('| batch norm | native addon not built | | |');
}

console.log('| work | before | after | speed-up |');
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(r);
