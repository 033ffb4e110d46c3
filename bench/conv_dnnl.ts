/**
 * Convolution training steps on the native paths, interleaved A/B in one process so that a busy shared
 * machine drifts over all columns alike: OpenBLAS (im2col + GEMM, direct AVX2 kernels for narrow layers),
 * oneDNN on NHWC data (weights reordered; the default), oneDNN in its blocked layouts (reorders of every operand at
 * the boundary) and oneDNN on NHWC/HWIO plain. Each round times
 * every path `--reps` times; the table gives the median and best of all repetitions and their interquartile range.
 *
 *   node dist/bench/conv_dnnl.js [--rounds 5] [--reps 5] [--only cnn] [--plain]
 */
import * as tf from '@tensorflow/tfjs-core';
import os from 'node:os';
import { initEngine } from '../src/engine/backend.js';
import {
  describeNativeKernels,
  enableNativeKernels,
  loadNativeDnnl,
  nativeDnnlUnavailableReason,
} from '../src/engine/native/index.js';
import { Grid } from '../src/sorted/grid.js';
import { FourConv, cyclicLabels, mnistResNet, sgdStep, sortedStep } from './workloads.js';
import { positiveIntArg } from '../src/cli/args.js';
import { median, timesMs } from '../src/train/timing.js';
import { benchCommand, parseBench } from './cli.js';

const opts = parseBench<{ rounds: number; reps: number; only?: string; plain?: boolean }>(
  benchCommand('conv_dnnl', 'convolution steps: OpenBLAS vs oneDNN blocked (vs plain), interleaved')
    .option('--rounds <n>', 'interleaved rounds', positiveIntArg, 5)
    .option('--reps <n>', 'timed repetitions per path per round', positiveIntArg, 5)
    .option('--only <regex>', 'only the workloads whose name matches')
    .option('--plain', 'also oneDNN on NHWC/HWIO plain (its GEMM fallback; slow, off by default)'),
);
const only = opts.only ? new RegExp(opts.only) : null;
const { rounds, reps } = opts;

await initEngine('wasm');
const dnnl = loadNativeDnnl();
if (!dnnl) {
  console.log(`oneDNN unavailable: ${nativeDnnlUnavailableReason()}`);
  process.exit(0);
}

const PATHS = {
  OpenBLAS: () => enableNativeKernels({ dnnl: false }),
  'oneDNN nhwc': () => (enableNativeKernels(), dnnl.layout('nhwc')),
  'oneDNN blocked': () => (enableNativeKernels(), dnnl.layout('blocked')),
  'oneDNN plain': () => (enableNativeKernels(), dnnl.layout('plain')),
} as const;
type Path = keyof typeof PATHS;
const paths = (Object.keys(PATHS) as Path[]).filter((p) => opts.plain || p !== 'oneDNN plain');

const workloads: [string, () => void, () => void][] = [];
{
  const cnn = new FourConv();
  const x = tf.randomNormal([64, 32, 32, 3]) as tf.Tensor4D;
  const y = cyclicLabels(64);
  const loss = () => tf.losses.softmaxCrossEntropy(y, cnn.forward(x)) as tf.Scalar;
  workloads.push(['cnn step b64', () => sgdStep(cnn.trainableVariables(), loss), () => cnn.dispose()]);
}
{
  const net = mnistResNet();
  const img = tf.randomNormal([64, 28, 28, 1]);
  const one = tf.randomNormal([1, 28, 28, 1]);
  const labels = cyclicLabels(64);
  const grid = new Grid({ width: [0.25, 0.5, 1] }, net);
  for (const e of grid.entries) {
    const step = () => sortedStep(net, e.sub, img, labels);
    workloads.push([`sorted step width ${e.sub.width}`, step, () => undefined]);
  }
  const full = grid.entries[grid.entries.length - 1];
  tf.tidy(() => net.forward(one, full.sub, { mode: 'calibrate', key: full.id }));
  workloads.push([
    'latency b1 width 1',
    () => tf.tidy(() => void net.forward(one, full.sub, { mode: 'eval', key: full.id }).dataSync()),
    () => net.dispose(),
  ]);
}

const load = [os.loadavg()[0]];
const times = new Map<string, Record<Path, number[]>>();
for (const [work] of workloads)
  times.set(work, { OpenBLAS: [], 'oneDNN nhwc': [], 'oneDNN blocked': [], 'oneDNN plain': [] });
for (let r = 0; r < rounds; r++) {
  for (const [work, fn] of workloads) {
    if (only && !only.test(work)) continue;
    for (const path of paths) {
      PATHS[path]();
      // Every timed repetition, after one warm-up (primitive creation JIT-compiles, buffers are allocated).
      times.get(work)![path].push(...timesMs(fn, reps));
    }
  }
  load.push(os.loadavg()[0]);
}
for (const [, , dispose] of workloads) dispose();

/** Median and best of all repetitions, and the interquartile range as a share of the median (noise). */
const cell = (xs: number[]) => {
  if (!xs.length) return '—';
  const s = [...xs].sort((a, b) => a - b);
  const q = (f: number) => s[Math.min(s.length - 1, Math.floor(f * s.length))];
  const iqr = ((q(0.75) - q(0.25)) / q(0.5)) * 100;
  return `${q(0.5).toFixed(1)} ms (best ${s[0].toFixed(1)}, IQR ${iqr.toFixed(0)}%)`;
};
console.log(
  `\n${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}; ${describeNativeKernels()}\n` +
    `${rounds} interleaved rounds × ${reps} reps; 1-min load average ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)}\n`,
);
console.log(`| work | ${paths.join(' | ')} | nhwc / OpenBLAS | nhwc / blocked | (median ratios) |`);
console.log(`|---|${paths.map(() => '---:|').join('')}---:|---:|`);
for (const [work, t] of times) {
  if (only && !only.test(work)) continue;
  const m = (p: Path) => median(t[p]);
  console.log(
    `| ${work} | ${paths.map((p) => cell(t[p])).join(' | ')} | ${(m('oneDNN nhwc') / m('OpenBLAS')).toFixed(2)}× | ${(m('oneDNN nhwc') / m('oneDNN blocked')).toFixed(2)}× |`,
  );
}
