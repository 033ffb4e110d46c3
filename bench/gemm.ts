/**
 * Matmul throughput, side by side in one process: tfjs `cpu`, tfjs `wasm` with its stock kernels, and
 * `wasm` with the OpenBLAS kernels (src/engine/native/). GFLOP/s = 2·M·N·K / median time of the timed
 * repetitions after one warm-up; prints a markdown table.
 *
 *   npm run build && node dist/bench/gemm.js [--reps 5]
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import {
  describeNativeKernels,
  disableNativeKernels,
  enableNativeKernels,
} from '../src/engine/native/index.js';
import { positiveIntArg } from '../src/cli/args.js';
import { benchCommand, parseBench } from './cli.js';

const { reps: minReps } = parseBench<{ reps: number }>(
  benchCommand('gemm', 'matmul GFLOP/s: tfjs cpu, tfjs wasm, wasm + the native OpenBLAS kernels').option(
    '--reps <n>',
    'timed runs per product at least (the cpu backend: at most 3)',
    positiveIntArg,
    5,
  ),
);

interface Case {
  name: string;
  a: number[];
  b: number[];
  transposeB: boolean;
  macs: number;
}

const cube = (n: number): Case => ({ name: `${n}³`, a: [n, n], b: [n, n], transposeB: false, macs: n ** 3 });
const CASES: Case[] = [
  cube(256),
  cube(512),
  cube(1024),
  // What Linear.forward does: x [batch, in] · Wᵀ with W [out, in].
  {
    name: 'linear 256×1024 · (1024×1024)ᵀ',
    a: [256, 1024],
    b: [1024, 1024],
    transposeB: true,
    macs: 256 * 1024 ** 2,
  },
  // Attention scores: 8 heads, [128, 64] · [128, 64]ᵀ.
  {
    name: 'attention 8 × 128×64 · (128×64)ᵀ',
    a: [8, 128, 64],
    b: [8, 128, 64],
    transposeB: true,
    macs: 8 * 128 ** 2 * 64,
  },
];

type Path = 'cpu' | 'wasm' | 'wasm + native';
const PATHS: Path[] = ['cpu', 'wasm', 'wasm + native'];
/** Fast products get extra runs (up to 3× the minimum) within this time. */
const EXTRA_RUNS_MS = 1500;

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function usePath(path: Path): Promise<void> {
  await initEngine(path === 'cpu' ? 'cpu' : 'wasm');
  if (path === 'wasm + native') {
    const status = enableNativeKernels();
    if (!status.enabled) throw new Error(`native kernels unavailable: ${status.reason}`);
  } else disableNativeKernels();
}

/** Median GFLOP/s, and the repetitions timed. */
function measure(c: Case, reps: number): { gflops: number; reps: number } {
  const a = tf.randomUniform(c.a, -1, 1);
  const b = tf.randomUniform(c.b, -1, 1);
  const run = () => tf.matMul(a, b, false, c.transposeB).dispose();
  run(); // warm-up
  const times: number[] = [];
  const start = performance.now();
  while (times.length < reps || (times.length < 3 * reps && performance.now() - start < EXTRA_RUNS_MS)) {
    const t = performance.now();
    run();
    times.push(performance.now() - t);
  }
  tf.dispose([a, b]);
  return { gflops: (2 * c.macs) / (median(times) * 1e6), reps: times.length };
}

async function main(): Promise<void> {
  const results = new Map<string, { gflops: number; reps: number }>();
  for (const path of PATHS) {
    try {
      await usePath(path);
    } catch (err) {
      console.error(`skipping ${path}: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    for (const c of CASES) {
      // The plain-JavaScript cpu backend needs ~3 s per 1024³ product: a warm-up and 3 timed runs suffice.
      results.set(`${path}|${c.name}`, measure(c, path === 'cpu' ? Math.min(minReps, 3) : minReps));
    }
  }

  const cell = (path: Path, c: Case) => {
    const r = results.get(`${path}|${c.name}`);
    return r ? `${r.gflops.toFixed(1)} (${r.reps})` : 'n/a';
  };
  const ratio = (path: Path, c: Case) => {
    const over = results.get(`${path}|${c.name}`);
    const base = results.get(`wasm|${c.name}`);
    return over && base ? `${(over.gflops / base.gflops).toFixed(1)}×` : 'n/a';
  };
  console.log(
    `\nmatmul GFLOP/s, median of (n) timed runs after a warm-up; Node ${process.version}, ` +
      `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}); ${describeNativeKernels()}\n`,
  );
  console.log(
    '| product (M×K · K×N) | tfjs cpu | tfjs wasm | wasm + native | native / wasm | native / cpu |',
  );
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const c of CASES) {
    const row = [c.name, ...PATHS.map((p) => cell(p, c)), ratio('wasm + native', c)];
    const native = results.get(`wasm + native|${c.name}`);
    const cpu = results.get(`cpu|${c.name}`);
    row.push(native && cpu ? `${(native.gflops / cpu.gflops).toFixed(0)}×` : 'n/a');
    console.log(`| ${row.join(' | ')} |`);
  }
}

await main();
