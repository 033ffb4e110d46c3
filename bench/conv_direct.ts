/**
 * The addon's direct convolution kernels for narrow layers against its im2col + GEMM path, switched back and
 * forth in one process on the same tensors (native/blas.c, convDirect). Shapes: the sorted ResNet's layers
 * at the widths bench/run.ts trains, batch 64, and inference batches of its cheapest sub-model.
 *
 *   node dist/bench/conv_direct.js
 */
import { benchCommand, parseBench } from './cli.js';
import { nativeBlasOrExit } from './native.js';

parseBench(benchCommand('conv_direct', "the addon's direct convolutions vs its im2col + GEMM, one process"));

const blas = nativeBlasOrExit();
if (!blas.convDirect()) {
  console.log('direct kernels unavailable here (no AVX2/FMA, or SORTEDNET_CONV_DIRECT=0)');
  process.exit(0);
}

// [batch, size, inC, outC, stride]
const CASES: [number, number, number, number, number][] = [
  [64, 28, 4, 4, 1],
  [64, 28, 8, 8, 1],
  [64, 28, 16, 16, 1],
  [64, 28, 16, 32, 2],
  [64, 14, 32, 32, 1],
  [64, 7, 24, 24, 1],
  // width 0.75 of the same ResNet: 12, 24, 48 channels
  [64, 28, 12, 12, 1],
  [64, 7, 48, 48, 1],
  [64, 7, 64, 64, 1],
  // inference batches of the demo's cheapest sub-model (width 25 %): the stem on one channel, rows of 14 and 7
  [32, 28, 1, 4, 1],
  [32, 14, 8, 8, 1],
  [32, 7, 16, 16, 1],
];
const ROUNDS = 3;
const REPS = 10;

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

console.log('| layer (3×3) | pass | im2col + GEMM | direct | speed-up |');
console.log('|---|---|---:|---:|---:|');
for (const [N, H, IC, OC, s] of CASES) {
  const OH = Math.ceil(H / s);
  const pad = Math.max(0, ((OH - 1) * s + 3 - H) >> 1);
  const g = Int32Array.from([N, H, H, IC, OH, OH, OC, 3, 3, s, s, 1, 1, pad, pad]);
  const x = random(N * H * H * IC, 1);
  const w = random(9 * IC * OC, 2);
  const dy = random(N * OH * OH * OC, 3);
  const y = new Float32Array(N * OH * OH * OC);
  const dx = new Float32Array(x.length);
  const dw = new Float32Array(w.length);
  const passes: [string, () => void][] = [
    ['forward', () => blas.conv2d(x, w, y, g)],
    ['input gradient', () => blas.conv2dBackpropInput(dy, w, dx, g)],
    ['filter gradient', () => blas.conv2dBackpropFilter(x, dy, dw, g)],
  ];
  for (const [pass, run] of passes) {
    const times: Record<'gemm' | 'direct', number[]> = { gemm: [], direct: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const mode of ['gemm', 'direct'] as const) {
        blas.convDirect(mode === 'direct');
        run();
        const t0 = performance.now();
        for (let i = 0; i < REPS; i++) run();
        times[mode].push((performance.now() - t0) / REPS);
      }
    }
    const [a, b] = [median(times.gemm), median(times.direct)];
    console.log(
      `| ${N}×${H}×${H}×${IC} → ${OC}, stride ${s} | ${pass} | ${a.toFixed(2)} ms | ${b.toFixed(2)} ms | ${(a / b).toFixed(2)}× |`,
    );
  }
}
blas.convDirect(true);
