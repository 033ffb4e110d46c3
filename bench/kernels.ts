/**
 * The project's kernels against what they replace, side by side in one process (docs/performance.md):
 *  - Slice, GatherV2 and transposed BatchMatMul on the portable wasm path vs tfjs's stock wasm kernels, and a
 *    decoding step's product with its transposed weight copied on every call vs kept;
 *  - training batch norm: the JavaScript kernels vs the native addon's;
 *  - with the addon: a decoding step's attention over a KV cache, appending by concatenation and attending
 *    with matMul/softmax vs the in-place cached-attention kernel; batch norm in evaluation with its ReLU,
 *    γ/β prefixes sliced, tf.batchNorm and tf.relu vs the folded scale-and-shift kernel a BatchNorm2d runs.
 *
 *   node dist/bench/kernels.js
 */
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { disableNativeKernels, enableNativeKernels, loadNativeBlas } from '../src/engine/native/index.js';
import { stockSliceWasm } from '../src/engine/kernels/slice_wasm.js';
import { stockGatherWasm } from '../src/engine/kernels/gather_wasm.js';
import { cachedAttention } from '../src/engine/ops/cached_attention.js';
import { scaleShift } from '../src/engine/ops/scale_shift.js';
import { keepTransposedOperands, stockBatchMatMulWasm } from '../src/engine/kernels/batch_mat_mul_wasm.js';
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

/**
 * a and b timed alternately, three rounds of `reps` each: the median round of each. `setup` runs before
 * each side's round, untimed (switching kernels).
 */
function sideBySide(
  a: () => void,
  b: () => void,
  reps: number,
  setup: [() => void, () => void] = [() => {}, () => {}],
): [number, number] {
  const t: [number[], number[]] = [[], []];
  for (let round = 0; round < 3; round++) {
    setup[0]();
    t[0].push(medianMs(a, reps));
    setup[1]();
    t[1].push(medianMs(b, reps));
  }
  const median = (xs: number[]) => xs.sort((p, q) => p - q)[1];
  return [median(t[0]), median(t[1])];
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
  // An embedding lookup of a decoding step: 8 token rows of lm-small's [2048, 192] table.
  const table = tf.randomNormal([2048, 192]);
  const ids = tf.tensor2d([5, 77, 1024, 3, 2047, 9, 640, 12], [8, 1], 'int32');
  const [a, b] = versus(tf.GatherV2, stockGatherWasm(), () => tf.gather(table, ids).dispose());
  row('GatherV2: 8 rows of [2048, 192]', a, b, ['stock', 'project']);
}
{
  const x = tf.randomNormal([64, 784]);
  const w = tf.randomNormal([1024, 784]);
  const dy = tf.randomNormal([64, 1024]);
  // In training each step brings new operands: the transposed copy is made on every call here.
  keepTransposedOperands(false);
  const [a, b] = versus(tf.BatchMatMul, stockBatchMatMulWasm(), () => tf.matMul(x, w, false, true).dispose());
  row('BatchMatMul x·Wᵀ, 64×784 · (1024×784)ᵀ', a, b, ['stock', 'project']);
  const [c, d] = versus(tf.BatchMatMul, stockBatchMatMulWasm(), () =>
    tf.matMul(dy, x, true, false).dispose(),
  );
  row('BatchMatMul dyᵀ·x (weight gradient)', c, d, ['stock', 'project']);
  keepTransposedOperands(true);
  // A decoding step through lm-small's FFN weight: the transposed weight copied every call, or kept.
  const h = tf.randomNormal([1, 192]);
  const up = tf.randomNormal([512, 192]);
  const step = () => tf.matMul(h, up, false, true).dispose();
  const [e, f] = sideBySide(step, step, 200, [
    () => keepTransposedOperands(false),
    () => keepTransposedOperands(true),
  ]);
  row('BatchMatMul h·Wᵀ, 1×192 · (512×192)ᵀ, W again each call', e, f, ['copied', 'kept']);
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
    const backward = () =>
      tf.dispose(engine.runKernel(BatchNormTrainGrad, { dy, x, mean, rstd, gamma: g }, {}));
    for (const [pass, fn] of [
      ['forward', forward],
      ['backward', backward],
    ] as const) {
      const kernels: [() => void, () => void] = [disableNativeKernels, () => void enableNativeKernels()];
      row(`batch norm ${pass}, [${shape}]`, ...sideBySide(fn, fn, 7, kernels), ['JavaScript', 'native']);
    }
  }
} else {
  rows.push('| batch norm | native addon not built | | |');
}

// One layer's attention in a batched decoding step of lm-small: 8 sequences, 6 heads of 32, 64
// positions cached, one new. Before: the cache grows by concatenation (a copy of all of it) and the
// step attends with matMul and softmax; after: the new position is written into a buffer with room
// and one kernel attends over it.
if (loadNativeBlas()) {
  enableNativeKernels();
  const [B, h, P, d] = [8, 6, 64, 32];
  const q = tf.randomNormal([B, h, 1, d]) as tf.Tensor4D;
  const k = tf.randomNormal([B, h, 1, d]) as tf.Tensor4D;
  const v = tf.randomNormal([B, h, 1, d]) as tf.Tensor4D;
  const past = {
    k: tf.randomNormal([B, h, P, d]) as tf.Tensor4D,
    v: tf.randomNormal([B, h, P, d]) as tf.Tensor4D,
  };
  const room = {
    k: tf.pad(past.k, [
      [0, 0],
      [0, 0],
      [0, 64],
      [0, 0],
    ]) as tf.Tensor4D,
    v: tf.pad(past.v, [
      [0, 0],
      [0, 0],
      [0, 64],
      [0, 0],
    ]) as tf.Tensor4D,
  };
  const concat = () =>
    tf
      .tidy(() => {
        const K = tf.concat([past.k, k], 2);
        const V = tf.concat([past.v, v], 2);
        return tf.matMul(tf.softmax(tf.matMul(tf.mul(q, 1 / Math.sqrt(d)), K, false, true)), V);
      })
      .dispose();
  const inPlace = () => cachedAttention(q, k, v, room, P).dispose();
  row('decoding attention, 8 × 6 heads × 64 cached positions (native)', ...sideBySide(concat, inPlace, 25), [
    'concatenate',
    'in place',
  ]);
}

// Batch norm in evaluation (a server's batch of 16 through a sub-network's 16 of 32 channels), ReLU after it.
if (loadNativeBlas()) {
  enableNativeKernels();
  const x = tf.randomNormal([16, 28, 28, 16]);
  const [gamma, beta] = [tf.randomNormal([32]), tf.randomNormal([32])];
  const [mean, variance] = [tf.randomNormal([16]), tf.add(tf.randomUniform([16]), 0.5)];
  const composed = () =>
    tf
      .tidy(() =>
        tf.relu(tf.batchNorm(x, mean, variance, tf.slice(beta, [0], [16]), tf.slice(gamma, [0], [16]), 1e-5)),
      )
      .dispose();
  const scale = tf.div(tf.slice(gamma, [0], [16]), tf.sqrt(tf.add(variance, 1e-5))) as tf.Tensor1D;
  const shift = tf.sub(tf.slice(beta, [0], [16]), tf.mul(mean, scale)) as tf.Tensor1D;
  const folded = () => scaleShift(x, scale, shift, 'relu').dispose();
  row('batch norm in evaluation + ReLU, [16, 28, 28, 16] (native)', ...sideBySide(composed, folded, 15), [
    'slices + batchNorm + relu',
    'folded',
  ]);
}

console.log('| work | before | after | speed-up |');
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(r);
