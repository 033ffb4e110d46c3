/**
 * Latency of sub-models vs the full model at widths 25/50/75/100% for an MLP and a CNN, with the
 * FLOP fraction beside the time fraction, measured side by side in one run (issue: foundation).
 * Target: a 25%-width sub-model takes at most 2× its FLOP fraction of the full model's time.
 *   npm run build && node dist/bench/width_latency.js [--backend wasm|cpu] [--batch 64]
 */
import * as tf from '@tensorflow/tfjs-core';
import { subModelContext } from '../src/nn/module.js';
import { Option } from 'commander';
import { BACKENDS, initEngine, type BackendName } from '../src/engine/backend.js';
import { positiveIntArg } from '../src/cli/args.js';
import { Mlp } from '../src/models/mlp.js';
import { ResNet, resnetConfig } from '../src/models/resnet.js';
import type { SortedModel } from '../src/models/model.js';
import { medianMs } from '../src/train/timing.js';
import { benchCommand, parseBench } from './cli.js';

const o = parseBench<{ backend: BackendName; batch: number; reps: number }>(
  benchCommand('width_latency', 'forward latency of sub-models at widths 25/50/75/100% (MLP, CNN)')
    .addOption(new Option('--backend <name>', 'the engine').choices(BACKENDS).default('wasm'))
    .option('--batch <n>', 'batch size', positiveIntArg, 64)
    .option('--reps <n>', 'timed forward passes (the median is reported)', positiveIntArg, 15),
);
const backend = await initEngine(o.backend);
const { batch, reps } = o;

function time(model: SortedModel, x: tf.Tensor, width: number): number {
  const run = () =>
    tf.tidy(() => {
      model.forward(x, { width }, subModelContext({ width }, 'train')).dataSync();
    });
  return medianMs(run, reps, 3);
}

const families: [string, SortedModel, tf.Tensor][] = [
  [
    'MLP 784-1024-1024-10',
    new Mlp({ inputs: 784, hidden: [1024, 1024], classes: 10 }),
    tf.randomNormal([batch, 784]),
  ],
  [
    'CNN (ResNet 32/64/128, 28×28)',
    new ResNet(
      resnetConfig({
        inChannels: 1,
        imageSize: 28,
        classes: 10,
        stem: 32,
        widths: [32, 64, 128],
        blocks: [1, 1, 1],
      }),
    ),
    tf.randomNormal([batch, 28, 28, 1]),
  ],
];

console.log(`backend ${backend}, batch ${batch}, median of ${reps} forward passes\n`);
console.log('| model | width | FLOP fraction | time ms | time fraction | time / FLOP fraction |');
console.log('|---|---|---|---|---|---|');
for (const [name, model, x] of families) {
  const full = time(model, x, 1);
  const fullFlops = model.cost({}).flops;
  for (const w of [0.25, 0.5, 0.75, 1]) {
    const t = w === 1 ? full : time(model, x, w);
    const ff = model.cost({ width: w }).flops / fullFlops;
    console.log(
      `| ${name} | ${w * 100}% | ${ff.toFixed(3)} | ${t.toFixed(2)} | ${(t / full).toFixed(3)} | ${(t / full / ff).toFixed(2)} |`,
    );
  }
}
