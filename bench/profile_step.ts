/**
 * Where a training step's time goes: tf.profile's kernel times for one SGD step, summed by kernel and by
 * kernel + input shapes (the tables docs/performance.md cites).
 *
 *   node dist/bench/profile_step.js transformer [batch]     (4 layers, d 256, seq 128; default batch 1)
 *   node dist/bench/profile_step.js resnet [width]          (the bench's sorted ResNet, batch 64; default 1)
 */
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, engineDescription } from '../src/engine/backend.js';
import { Transformer } from '../src/models/transformer.js';
import { ResNet, resnetConfig } from '../src/models/resnet.js';

const [what = 'transformer', arg] = process.argv.slice(2);
if (what !== 'transformer' && what !== 'resnet') {
  console.error(`profile_step: unknown model '${what}'; use transformer or resnet`);
  process.exit(2);
}
await initEngine('wasm');

let vars: tf.Variable[];
let loss: () => tf.Scalar;
if (what === 'transformer') {
  const batch = Number(arg ?? 1);
  const lm = new Transformer({
    task: 'lm',
    vocab: 256,
    dim: 256,
    heads: 4,
    headDim: 64,
    ffn: 1024,
    layers: 4,
    maxLen: 128,
  });
  const ids = tf.tensor2d(
    Array.from({ length: batch * 128 }, (_, i) => (i * 31) % 256),
    [batch, 128],
    'int32',
  );
  const target = tf.oneHot(tf.reshape(ids, [-1]) as tf.Tensor1D, 256);
  vars = lm.trainableVariables();
  loss = () =>
    tf.losses.softmaxCrossEntropy(
      target,
      tf.reshape(lm.forward(ids, {}, { mode: 'train', key: 'full' }), [-1, 256]),
    ) as tf.Scalar;
} else {
  const width = Number(arg ?? 1);
  const net = new ResNet(
    resnetConfig({
      inChannels: 1,
      imageSize: 28,
      classes: 10,
      stem: 16,
      widths: [16, 32, 64],
      blocks: [2, 2, 2],
    }),
  );
  const img = tf.randomNormal([64, 28, 28, 1]);
  const labels = tf.oneHot(
    tf.tensor1d(
      Array.from({ length: 64 }, (_, i) => i % 10),
      'int32',
    ),
    10,
  );
  vars = net.trainableVariables();
  loss = () =>
    tf.losses.softmaxCrossEntropy(
      labels,
      net.forward(img, { width }, { mode: 'train', key: 'w' }),
    ) as tf.Scalar;
}

const step = () =>
  tf.tidy(() => {
    const { value, grads } = tf.variableGrads(loss, vars);
    for (const v of vars) if (grads[v.name]) v.assign(tf.sub(v, tf.mul(grads[v.name], 0.01)));
    value.dataSync();
  });
for (let i = 0; i < 3; i++) step();
const t0 = performance.now();
for (let i = 0; i < 5; i++) step();
console.log(
  `${engineDescription()}\n${what} ${arg ?? ''}: step ${((performance.now() - t0) / 5).toFixed(1)} ms (mean of 5)`,
);

const profile = await tf.profile(step);
const sum = (key: (k: (typeof profile.kernels)[number]) => string) => {
  const acc = new Map<string, [number, number]>();
  for (const k of profile.kernels) {
    const a = acc.get(key(k)) ?? [0, 0];
    acc.set(key(k), [a[0] + (k.kernelTimeMs as number), a[1] + 1]);
  }
  return [...acc].sort((a, b) => b[1][0] - a[1][0]).slice(0, 15);
};
console.log(`\n${profile.kernels.length} kernels; by kernel (ms, calls):`);
for (const [k, [ms, n]] of sum((k) => k.name))
  console.log(`  ${k.padEnd(32)} ${ms.toFixed(2).padStart(8)} ${n}`);
console.log('\nby kernel and input shapes:');
for (const [k, [ms, n]] of sum((k) => `${k.name} ${JSON.stringify(k.inputShapes)}`))
  console.log(`  ${k.padEnd(72)} ${ms.toFixed(2).padStart(8)} ${n}`);
