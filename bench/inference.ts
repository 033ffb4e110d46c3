/**
 * Inference batches of a trained run's sub-models, with each convolution and its BatchNorm run as stored and
 * folded into one convolution (src/nn/conv_bn.ts), switched back and forth in one process on the same inputs:
 * the path `sortednet serve` and `predict` run (DeployedModel.classify: normalise, forward, softmax, read back).
 *
 *   node dist/bench/inference.js --run runs/demo [--batches 1,8,32] [--rounds 5] [--reps 60]
 */
import { Option } from 'commander';
import { BACKENDS, initEngine, type BackendName } from '../src/engine/backend.js';
import { positiveIntArg } from '../src/cli/args.js';
import { sampleSize } from '../src/deploy/model.js';
import { DEFAULT_FOLD_BYTES } from '../src/nn/fold_cache.js';
import { loadServedModel } from '../src/serve/load.js';
import { deployedOf } from '../src/serve/runner.js';
import { benchCommand, parseBench } from './cli.js';

const o = parseBench<{ run: string; backend: BackendName; batches: string; rounds: number; reps: number }>(
  benchCommand('inference', 'inference batches per sub-model: convolution + BatchNorm as stored vs folded')
    .requiredOption('--run <dir>', 'a trained run folder (sortednet train / demo)')
    .addOption(new Option('--backend <name>', 'the engine').choices(BACKENDS).default('wasm'))
    .option('--batches <list>', 'batch sizes, comma-separated', '1,8,32')
    .option('--rounds <n>', 'rounds of stored then folded (the best round is reported)', positiveIntArg, 5)
    .option('--reps <n>', 'batches timed per round', positiveIntArg, 60),
);
const batches = o.batches.split(',').map((b) => positiveIntArg(b.trim()));
await initEngine(o.backend);
const served = await loadServedModel(o.run);
const deployed = deployedOf(served);
const size = sampleSize(deployed.inputSpec);
const subs = served.subs;
// The cheapest, the middle and the full sub-model of the grid.
const picks = [...new Set([subs[0], subs[Math.floor(subs.length / 2)], subs[subs.length - 1]])];

const inputs = new Map(
  batches.map((n) => [n, Float32Array.from({ length: n * size }, (_, i) => ((i * 7919) % 255) / 255)]),
);
const best = new Map<string, number>();
for (let round = 0; round < o.rounds; round++)
  for (const folded of [false, true]) {
    deployed.folds.maxBytes = folded ? DEFAULT_FOLD_BYTES : 0;
    deployed.folds.clear();
    for (const s of picks)
      for (const n of batches) {
        const x = inputs.get(n)!;
        // classify normalises its input in place: a fresh copy per call.
        const run = () => deployed.classify(x.slice(), n, s.id, s.sub);
        for (let i = 0; i < 5; i++) run();
        const t0 = performance.now();
        for (let i = 0; i < o.reps; i++) run();
        const k = `${s.id}|${n}|${folded}`;
        best.set(k, Math.min(best.get(k) ?? Infinity, (performance.now() - t0) / o.reps));
      }
  }

console.log(`${o.run}: best of ${o.rounds} rounds of ${o.reps} batches, ms per batch (backend ${o.backend})`);
console.log('| sub-model | batch | stored | folded | speed-up |');
console.log('|---|---:|---:|---:|---:|');
for (const s of picks)
  for (const n of batches) {
    const [a, b] = [best.get(`${s.id}|${n}|false`)!, best.get(`${s.id}|${n}|true`)!];
    console.log(`| ${s.id} | ${n} | ${a.toFixed(3)} | ${b.toFixed(3)} | ${(a / b).toFixed(2)}× |`);
  }
