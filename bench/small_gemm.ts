/**
 * The addon's kernels for matrix products of a few rows (native/blas.c) against OpenBLAS's sgemm, switched back and
 * forth in one process on the same arrays: y[M, N] = x[M, K] · W[N, K]ᵀ, the shape of a decoding step through a
 * linear layer (M = 1), a speculative verification pass (M = k + 1) or a batch of prompts. Shapes are lm-small's
 * (d 192, SwiGLU 512, vocabulary 2048). Three contenders: OpenBLAS; the few-row kernel on W as stored (sgemm with
 * smallGemm on: dot products, summed across lanes); and, with AVX-512, the kernel on W's packed copy (sgemmPacked,
 * what the prefix matmul runs for M ≤ 12). Two figures each: the weights hot in cache (the same matrix again and
 * again), and cold (a new matrix each call, from a 64 MB pool, as when a model's layers take turns). The addon
 * takes M ≤ 8 (12 with AVX-512); larger products stay on OpenBLAS.
 *
 *   node dist/bench/small_gemm.js
 */
import { benchCommand, parseBench } from './cli.js';
import { nativeBlasOrExit } from './native.js';
import { packedLength } from '../src/engine/native/packed_weights.js';

parseBench(
  benchCommand('small_gemm', "the addon's few-row matrix products vs OpenBLAS's sgemm, one process"),
);

const blas = nativeBlasOrExit();
if (!blas.smallGemm()) {
  console.log('the few-row kernel is unavailable here (no AVX2/FMA, or SORTEDNET_SMALL_GEMM=0)');
  process.exit(0);
}

// [M, N, K]
const CASES: [number, number, number][] = [
  [1, 192, 192],
  [1, 512, 192],
  [1, 192, 512],
  [1, 2048, 192],
  [5, 512, 192],
  [5, 2048, 192],
  [8, 512, 192],
  [8, 2048, 192],
  [12, 512, 192],
  [12, 2048, 192],
];
const ROUNDS = 3;
const POOL_BYTES = 64 << 20;

function filled(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  });
}

/** µs per call of `run(i)`: the median of ROUNDS rounds of `reps` calls, after one round of warm-up. */
function time(m: number, n: number, k: number, run: (i: number) => void): number {
  const reps = Math.max(200, Math.round(2e8 / (m * n * k)));
  const rounds: number[] = [];
  for (let r = 0; r <= ROUNDS; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) run(i);
    if (r > 0) rounds.push((1000 * (performance.now() - t0)) / reps);
  }
  return rounds.sort((a, b) => a - b)[ROUNDS >> 1];
}

const packed = blas.packedGemm();
console.log(`OpenBLAS: ${blas.config()}`);
if (!packed) console.log('(no packed kernel here: it needs AVX-512; its columns are empty)');
console.log(
  '| M | N | K | OpenBLAS hot µs | few-row hot µs | packed hot µs | OpenBLAS ÷ packed | OpenBLAS cold µs | few-row cold µs | packed cold µs | OpenBLAS ÷ packed |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '—');
for (const [m, n, k] of CASES) {
  const x = filled(m * k, 1);
  const y = new Float32Array(m * n);
  const hot = [filled(n * k, 2)];
  const cold = Array.from({ length: Math.max(2, Math.floor(POOL_BYTES / (4 * n * k))) }, (_, i) =>
    filled(n * k, 3 + i),
  );
  const figures: number[] = [];
  for (const weights of [hot, cold]) {
    for (const on of [false, true]) {
      blas.smallGemm(on);
      figures.push(
        time(m, n, k, (i) =>
          blas.sgemm(false, true, m, n, k, 1, x, k, weights[i % weights.length], k, 0, y, n),
        ),
      );
    }
    blas.smallGemm(true);
    if (!packed) {
      figures.push(NaN);
      continue;
    }
    const panels = weights.map((w) => {
      const p = new Float32Array(packedLength(n, k));
      blas.packWeight(w, n, k, k, p);
      return p;
    });
    figures.push(
      time(m, n, k, (i) => blas.sgemmPacked(m, n, k, 1, x, k, panels[i % panels.length], n, k, 0, y, n)),
    );
  }
  const [bh, sh, ph, bc, sc, pc] = figures;
  console.log(
    `| ${m} | ${n} | ${k} | ${fmt(bh)} | ${fmt(sh)} | ${fmt(ph)} | ${packed ? (bh / ph).toFixed(2) : '—'} | ${fmt(bc)} | ${fmt(sc)} | ${fmt(pc)} | ${packed ? (bc / pc).toFixed(2) : '—'} |`,
  );
}
