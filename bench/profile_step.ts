/**
 * Where a training step's time goes: tf.profile's kernel times for one SGD step, summed by kernel and by
 * kernel + input shapes (the tables docs/performance.md cites).
 *
 *   node dist/bench/profile_step.js transformer [batch]     (4 layers, d 256, seq 128; default batch 1)
 *   node dist/bench/profile_step.js resnet [width]          (the bench's sorted ResNet, batch 64; default 1)
 *   node dist/bench/profile_step.js cnn                     (the bench's 4-conv CNN, batch 64)
 */
import * as tf from '@tensorflow/tfjs-core';
import { subModelContext } from '../src/nn/module.js';
import { Argument } from 'commander';
import { initEngine, engineDescription } from '../src/engine/backend.js';
import { numArg } from '../src/cli/args.js';
import { UsageError } from '../src/cli/errors.js';
import { FourConv, byteLm, cyclicLabels, mnistResNet, sgdStep } from './workloads.js';
import { benchCommand, parseBench } from './cli.js';

const command = benchCommand('profile_step', "where a training step's time goes (tf.profile, by kernel)")
  .addArgument(
    new Argument('[model]', 'the workload').choices(['transformer', 'resnet', 'cnn']).default('transformer'),
  )
  .addArgument(
    new Argument('[size]', 'transformer: batch; resnet: width in (0, 1] (batch 64)')
      .argParser(numArg)
      .default(1),
  );
parseBench(command);
const [what, size] = command.processedArgs as ['transformer' | 'resnet' | 'cnn', number];
if (what === 'transformer' && !(Number.isInteger(size) && size >= 1))
  throw new UsageError(`the transformer's batch must be a positive integer, not ${size}`);
if (what === 'resnet' && !(size > 0 && size <= 1))
  throw new UsageError(`the ResNet's width must be in (0, 1], not ${size}`);
const arg = command.args[1];
await initEngine('wasm');

let vars: tf.Variable[];
let loss: () => tf.Scalar;
if (what === 'transformer') {
  const work = byteLm(size);
  vars = work.lm.trainableVariables();
  loss = work.loss;
} else if (what === 'cnn') {
  const cnn = new FourConv();
  const x = tf.randomNormal([64, 32, 32, 3]) as tf.Tensor4D;
  const labels = cyclicLabels(64);
  vars = cnn.trainableVariables();
  loss = () => tf.losses.softmaxCrossEntropy(labels, cnn.forward(x)) as tf.Scalar;
} else {
  const net = mnistResNet();
  const img = tf.randomNormal([64, 28, 28, 1]);
  const labels = cyclicLabels(64);
  vars = net.trainableVariables();
  loss = () =>
    tf.losses.softmaxCrossEntropy(
      labels,
      net.forward(img, { width: size }, subModelContext({ width: size }, 'train')),
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
