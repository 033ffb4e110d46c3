/**
 * The benchmark suite, side by side in one run: GEMM, a CNN training step, a transformer training
 * step, a sorted training step at each width, and inference latency per sub-model — for this
 * project (the portable wasm path: tfjs's kernels plus the project's own in src/engine/kernels; the same
 * with the OpenBLAS addon's kernels; and with oneDNN's convolutions on top, src/engine/native) and PyTorch
 * CPU on the same shapes when it is installed (bench/torch_anchor.py; apt-get install python3-torch
 * libopenblas0-pthread), including the sorted step of the project's own PyTorch package (python/).
 * Each cell is the median of its repetitions with their interquartile range (noise) beside it.
 *
 *   npm run bench            (add -- --quick for fewer repetitions)
 */
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { initEngine } from '../src/engine/backend.js';
import {
  enableNativeKernels,
  disableNativeKernels,
  describeNativeKernels,
} from '../src/engine/native/index.js';
import { subModelContext } from '../src/nn/module.js';
import { FourConv, byteLm, cyclicLabels, mnistResNet, sgdStep, sortedStep } from './workloads.js';
import { Grid } from '../src/sorted/grid.js';
import type { SubModel } from '../src/sorted/submodel.js';
import { benchCommand, parseBench } from './cli.js';
import { timesMs } from '../src/train/timing.js';

const { quick } = parseBench<{ quick?: boolean }>(
  benchCommand(
    'run',
    'the benchmark suite (npm run bench): this project vs PyTorch CPU on the same shapes',
  ).option('--quick', 'fewer repetitions'),
);
const REPS = quick ? 3 : 7;

/** Median and interquartile range (as a share of the median) of `reps` timed runs after `warmup`. */
function timed(fn: () => void, reps = REPS, warmup = 2): { ms: number; iqr: number } {
  const ts = timesMs(fn, reps, warmup).sort((a, b) => a - b);
  const q = (f: number) => ts[Math.min(ts.length - 1, Math.floor(f * ts.length))];
  return { ms: q(0.5), iqr: (q(0.75) - q(0.25)) / q(0.5) };
}

type Row = {
  work: string;
  ms: Record<string, number>;
  iqr: Record<string, number>;
  unit?: 'ms' | 'GFLOP/s';
  flops?: number;
};
const rows: Row[] = [];
const paths = ['wasm', 'wasm + OpenBLAS', 'wasm + OpenBLAS + oneDNN'] as const;
const BEST = paths[paths.length - 1];

/** `reps` bounds the slow stock column; the native column, like the PyTorch anchor, takes more for a steady median. */
function measure(work: string, fn: () => void, flops?: number, reps = REPS): void {
  const row: Row = rows.find((r) => r.work === work) ?? { work, ms: {}, iqr: {}, flops };
  if (!rows.includes(row)) rows.push(row);
  const t = timed(fn, current === 'wasm' ? reps : Math.max(reps, quick ? 5 : 15));
  row.ms[current] = t.ms;
  row.iqr[current] = t.iqr;
}

/**
 * PyTorch on the same shapes, same machine, same run: once before and once after this project's columns,
 * keeping the faster figure per row. Why: these shared 2-core machines drift by up to 2× over minutes, and a
 * single anchor run would make a ratio of two different machine states.
 */
function torchAnchor(): Record<string, number> {
  const py = spawnSync('/usr/bin/python3', ['bench/torch_anchor.py', String(os.cpus().length)], {
    encoding: 'utf8',
  });
  if (py.status === 0)
    return JSON.parse(py.stdout.trim().split('\n').pop() ?? '{}') as Record<string, number>;
  console.error(`PyTorch anchor skipped: ${(py.stderr || py.error?.message || '').trim().split('\n').pop()}`);
  return {};
}
const loadBefore = os.loadavg()[0];
const torchBefore = torchAnchor();

let current: string = paths[0];
await initEngine('wasm');
for (const path of paths) {
  current = path;
  if (path === 'wasm') disableNativeKernels();
  else enableNativeKernels({ dnnl: path === 'wasm + OpenBLAS + oneDNN' });

  for (const n of [256, 512, 1024]) {
    const a = tf.randomNormal([n, n]);
    const b = tf.randomNormal([n, n]);
    measure(
      `gemm ${n}`,
      // The wasm backend computes synchronously, so the product is done when matMul returns; reading it
      // back (4 MB at 1024) would time a copy PyTorch's `a @ b` does not make.
      () => tf.matMul(a, b).dispose(),
      2 * n ** 3,
      n === 1024 && path === 'wasm' ? 3 : REPS,
    );
    tf.dispose([a, b]);
  }

  const cnn = new FourConv();
  const x = tf.randomNormal([64, 32, 32, 3]) as tf.Tensor4D;
  const y = cyclicLabels(64);
  measure(
    'cnn step',
    () =>
      sgdStep(cnn.trainableVariables(), () => tf.losses.softmaxCrossEntropy(y, cnn.forward(x)) as tf.Scalar),
    undefined,
    quick ? 2 : 4,
  );
  cnn.dispose();

  for (const batch of [1, 8]) {
    const { lm, loss, dispose } = byteLm(batch);
    measure(
      `transformer step b${batch}`,
      () => sgdStep(lm.trainableVariables(), loss),
      undefined,
      quick ? 2 : 3,
    );
    dispose();
  }

  // Sorted training step (ResNet-small on 28×28, batch 64) and inference latency per sub-model.
  const net = mnistResNet();
  const img = tf.randomNormal([64, 28, 28, 1]);
  const one = tf.randomNormal([1, 28, 28, 1]);
  const labels = cyclicLabels(64);
  const grid = new Grid({ width: [0.25, 0.5, 0.75, 1] }, net);
  for (const e of grid.entries) {
    const sub: SubModel = e.sub;
    const step = () => sortedStep(net, sub, img, labels);
    measure(`sorted step width ${e.sub.width}`, step, undefined, quick ? 2 : 4);
    tf.tidy(() => net.forward(one, sub, subModelContext(sub, 'calibrate')));
    measure(
      `latency b1 width ${e.sub.width}`,
      () =>
        tf.tidy(() => {
          net.forward(one, sub, subModelContext(sub, 'eval')).dataSync();
        }),
      undefined,
      15,
    );
  }
  net.dispose();
}

const torchAfter = Object.keys(torchBefore).length ? torchAnchor() : {};
const torch: Record<string, number> = {};
for (const [k, v] of Object.entries(torchBefore)) torch[k] = Math.min(v, torchAfter[k] ?? v);

console.log(
  `\n${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, Node ${process.version}; ${describeNativeKernels()}` +
    `\n1-min load average ${loadBefore.toFixed(1)} at the start, ${os.loadavg()[0].toFixed(1)} at the end` +
    ` (± is the interquartile range of the repetitions, as a share of the median)\n`,
);
console.log(
  `| work | ${paths.join(' | ')} | PyTorch CPU (best of 2 runs) | ${BEST} / PyTorch | … / PyTorch package sorted step |`,
);
console.log(`|---|${paths.map(() => '---:|').join('')}---:|---:|---:|`);
const fmt = (ms: number | undefined, iqr?: number, flops?: number) =>
  ms === undefined
    ? '—'
    : `${ms.toFixed(2)} ms${iqr === undefined ? '' : ` ±${(iqr * 100).toFixed(0)}%`}` +
      (flops ? ` (${(flops / ms / 1e6).toFixed(1)} GFLOP/s)` : '');
const ratio = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}×` : '—';
for (const r of rows) {
  const cells = paths.map((p) => fmt(r.ms[p], r.iqr[p], r.flops));
  const pkg = torch[`package ${r.work}`];
  console.log(
    `| ${r.work} | ${cells.join(' | ')} | ${fmt(torch[r.work], undefined, r.flops)} | ${ratio(r.ms[BEST], torch[r.work])} | ${ratio(r.ms[BEST], pkg)} |`,
  );
}
