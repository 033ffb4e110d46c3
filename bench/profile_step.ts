/**
 * Where a training step's time goes: tf.profile's kernel times for one SGD step, summed by kernel and by
 * kernel + input shapes (the tables docs/performance.md cites).
 *
 *   node dist/bench/profile_step.js transformer [batch]     (4 layers, d 256, seq 128; default batch 1)
 *   node dist/bench/profile_step.js resnet [width]          (the bench's sorted ResNet, batch 64; default 1)
 */
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, engineDescription } from '../src/engine/backend.js';
import { byteLm, cyclicLabels, mnistResNet, sgdStep } from './workloads.js';

const [what = 'transformer', arg] = process.argv.slice(2);
if (what !== 'transformer' && what !== 'resnet') {
  console.error(`profile_step: unknown model '${what}'; use transformer or resnet`);
  process.exit(2);
}
await initEngine('wasm');

let vars: tf.Variable[];
let loss: () => tf.Scalar;
if (what === 'transformer') {
  const work = byteLm(Number(arg ?? 1));
  vars = work.lm.trainableVariables();
  loss = work.loss;
} else {
  const width = Number(arg ?? 1);
  const net = mnistResNet();
  const img = tf.randomNormal([64, 28, 28, 1]);
  const labels = cyclicLabels(64);
  vars = net.trainableVariables();
  loss = () =>
    tf.losses.softmaxCrossEntropy(
      labels,
      net.forward(img, { width }, { mode: 'train', key: 'w' }),
    ) as tf.Scalar;
}

const step = () => sgdStep(vars, loss);
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
