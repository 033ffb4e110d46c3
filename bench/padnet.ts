/**
 * What a compact PAD model and the MoE dispatch cost at run time, measured:
 *  1. The Fashion-MNIST PAD ResNet of `sortednet padnet` (16/32/64 channels, one block per stage,
 *     K = 4) with static, DY-Conv, PAD κ = 0.3 (masked, as trained) and PAD κ = 0.3 compact block
 *     convolutions, and the same for three of its single layers (stride 1 and 2): parameters, FLOPs
 *     as each variant runs, median eval latency of a batch of 64. The compact model and layers are
 *     timed twice: with the native sparse per-sample kernel, and on the portable path (that kernel
 *     unregistered: dense per-sample kernels scattered from the packed values, as in a browser).
 *  2. A MoE FFN layer (E = 8 experts) on 2048 tokens: the dispatch (only the selected experts) at
 *     k = 1, 2, 4, 8 and with a capacity factor, against the dense formulation (every expert on
 *     every token).
 * Weights are untrained (latency does not depend on them); IMP partitions on 4 real batches.
 *
 *   npx tsc -p . && node dist/bench/padnet.js [--reps 15]     (about 30 s; on an otherwise idle machine)
 */
import * as tf from '@tensorflow/tfjs-core';
import { engineDescription, initEngine } from '../src/engine/backend.js';
import { loadDataset } from '../src/data/registry.js';
import { seedStream } from '../src/nn/init.js';
import { subModelContext, type ForwardContext, type Module } from '../src/nn/module.js';
import { Conv2d, convOutSize } from '../src/nn/conv2d.js';
import { DynamicConv2d } from '../src/dynamic/dynamic_conv.js';
import { PadConv2d, padLayers } from '../src/dynamic/partial.js';
import { CompactPadConv2d } from '../src/dynamic/compact.js';
import { SparsePerSampleConv2D } from '../src/engine/kernels/sparse_per_sample_conv2d.js';
import { MoE, dispatchExperts, mixExperts } from '../src/dynamic/moe.js';
import { partition } from '../src/dynamic/imp.js';
import { buildModel, type SortedModel } from '../src/models/index.js';
import { PadResNet, padResNetConfig, type ConvMode } from '../src/models/pad_resnet.js';
import { FULL } from '../src/sorted/submodel.js';
import { labelledBatches } from '../src/train/evaluate.js';
import { calibrateBatchNorm } from '../src/nn/calibrate.js';
import type { Cost } from '../src/sorted/cost.js';
import { positiveIntArg } from '../src/cli/args.js';
import { benchCommand, parseBench } from './cli.js';

const { reps: REPS } = parseBench<{ reps: number }>(
  benchCommand(
    'padnet',
    'PAD-Net at run time: params, FLOPs and latency of static / DY-Conv / PAD masked / PAD compact, and MoE dispatch',
  ).option('--reps <n>', 'timed repetitions per variant (medians are reported)', positiveIntArg, 9),
);
const ctx: ForwardContext = subModelContext(FULL, 'eval');

/**
 * Median wall time (ms) of each of `runs`, after 3 warm-up calls each; each call reads its result
 * back. The runs are interleaved (round-robin), so a change in machine load falls on all alike.
 */
function medians(runs: (() => tf.Tensor)[]): number[] {
  const once = (run: () => tf.Tensor) => {
    const t0 = performance.now();
    tf.tidy(() => {
      run().dataSync();
    });
    return performance.now() - t0;
  };
  for (let i = 0; i < 3; i++) runs.forEach(once);
  const times: number[][] = runs.map(() => []);
  for (let r = 0; r < REPS; r++) runs.forEach((run, i) => times[i].push(once(run)));
  return times.map((t) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)]);
}

/** `run` with the native sparse per-sample kernel unregistered: the compact layers' portable path. */
function portable(run: () => tf.Tensor): () => tf.Tensor {
  return () => {
    const kernel = tf.getKernel(SparsePerSampleConv2D, 'wasm');
    if (!kernel) return run();
    tf.unregisterKernel(SparsePerSampleConv2D, 'wasm');
    try {
      return run();
    } finally {
      tf.registerKernel(kernel);
    }
  };
}

/**
 * FLOPs per image of a masked PAD conv as it runs (as trained): DY-Conv's (the dense aggregation
 * and per-sample convolution) plus masking each sample's kernel (M ⊙, λ_d ·, + static: 3·|W|).
 */
const MASKING_FLOPS_PER_ELEMENT = 3;

/**
 * The sparse part's FLOPs per image of each compact PAD conv (2·nnz per output position), read from
 * one forward pass: the portable path runs a dense per-sample convolution instead (2·|W| per output
 * position, what the static part's plain convolution costs), so its FLOPs are the compact ones
 * less these.
 */
function sparseFlops(model: Module, forward: () => tf.Tensor): number {
  let flops = 0;
  const layers = model.namedModules().flatMap(([, m]) => (m instanceof CompactPadConv2d ? [m] : []));
  for (const layer of layers) {
    const f = layer.forward.bind(layer);
    layer.forward = (x, out, c) => {
      const y = f(x, out, c);
      flops += 2 * layer.shape.dynamic * y.shape[1] * y.shape[2];
      return y;
    };
  }
  tf.tidy(() => void forward().dataSync());
  for (const layer of layers) delete (layer as Partial<CompactPadConv2d>).forward;
  return flops;
}

const fmt = (n: number) => n.toLocaleString('en-US');
const row = (name: string, c: Cost, ms: number) =>
  `| ${name} | ${fmt(c.params)} | ${(c.flops / 1e6).toFixed(2)} | ${ms.toFixed(1)} |`;

async function main(): Promise<void> {
  await initEngine('wasm');
  console.log(`${engineDescription()}; median of ${REPS} interleaved runs after 3 warm-ups`);
  const data = loadDataset('fashion-mnist', { trainSize: 1024, testSize: 64 });
  const calibration = labelledBatches(data.train, 4, 64, 778);
  const x = labelledBatches(data.test, 1, 64, 1)[0].x;

  // 1. Models and single layers.
  const config = (conv: ConvMode) =>
    padResNetConfig({
      inChannels: 1,
      imageSize: 28,
      classes: 10,
      stem: 16,
      widths: [16, 32, 64],
      blocks: [1, 1, 1],
      conv,
    });
  const models: [string, SortedModel][] = [
    ['static', buildModel({ family: 'pad-resnet', config: config('static') })],
    ['DY-Conv (K = 4)', buildModel({ family: 'pad-resnet', config: config('dynamic') })],
  ];
  const pad = new PadResNet(config('pad'));
  partition(pad, calibration, { kappa: 0.3, rounds: 3 });
  const compactModel = pad.deploy();
  models.push(['PAD κ = 0.3, masked (as trained)', pad], ['PAD κ = 0.3, compact (deployed)', compactModel]);
  console.log('\nModel (batch of 64 Fashion-MNIST images, 28×28):\n');
  console.log('| model | deployed params | MFLOPs / image | latency (ms / batch of 64) |\n|---|---|---|---|');
  models.forEach(([, m]) =>
    calibrateBatchNorm(
      m,
      FULL,
      'full',
      calibration.map((b) => b.x),
    ),
  );
  const modelTimes = medians([
    ...models.map(
      ([, m]) =>
        () =>
          m.forward(x, FULL, ctx),
    ),
    portable(() => compactModel.forward(x, FULL, ctx)),
  ]);
  const maskingFlops = MASKING_FLOPS_PER_ELEMENT * padLayers(pad).reduce((n, l) => n + l.masks[0].size, 0);
  const costs: Cost[] = [
    models[0][1].cost(FULL),
    models[1][1].cost(FULL),
    { params: pad.parameterCount(), flops: models[1][1].cost(FULL).flops + maskingFlops },
    compactModel.cost(FULL),
  ];
  models.forEach(([name], i) => console.log(row(name, costs[i], modelTimes[i])));
  const portableModel = compactModel.cost(FULL);
  portableModel.flops -= sparseFlops(compactModel, () => compactModel.forward(x, FULL, ctx));
  console.log(row('PAD κ = 0.3, compact, portable path', portableModel, modelTimes[4]));

  for (const [cin, cout, size, stride] of [
    [16, 16, 28, 1],
    [32, 64, 14, 2],
    [64, 64, 7, 1],
  ]) {
    const s = seedStream(3);
    const input = tf.randomNormal([64, size, size, cin], 0, 1, 'float32', 4) as tf.Tensor4D;
    const outSize = convOutSize(size, 3, stride, 'same');
    const plain = new Conv2d(cin, cout, 3, s, { stride });
    const dynamic = new DynamicConv2d(cin, cout, 3, s, { stride });
    const masked = new PadConv2d(cin, cout, 3, s, { stride });
    const mask = tf.tidy(() =>
      tf.cast(tf.less(tf.randomUniform(masked.mask.shape, 0, 1, 'float32', 5), 0.3), 'float32'),
    );
    masked.mask.assign(mask);
    const compact = CompactPadConv2d.from(masked);
    console.log(
      `\nOne 3×3 layer ${cin} → ${cout} channels on ${size}×${size}, stride ${stride} (batch of 64; random mask κ ≈ 0.3):\n`,
    );
    console.log('| layer | params | MFLOPs / image | latency (ms / batch of 64) |\n|---|---|---|---|');
    const layers: [
      string,
      Module & { forward(x: tf.Tensor4D, out: number, c: ForwardContext): tf.Tensor4D },
      Cost,
    ][] = [
      ['static conv', plain, Conv2d.cost(cin, cout, 3, outSize, outSize)],
      ['DY-Conv', dynamic, dynamic.cost(size, size)],
      [
        'PAD masked',
        masked,
        {
          params: masked.parameterCount(),
          flops: dynamic.cost(size, size).flops + MASKING_FLOPS_PER_ELEMENT * masked.mask.size,
        },
      ],
      ['PAD compact', compact, compact.cost(size, size)],
    ];
    const times = medians([
      ...layers.map(
        ([, layer]) =>
          () =>
            layer.forward(input, cout, ctx),
      ),
      portable(() => compact.forward(input, cout, ctx)),
    ]);
    layers.forEach(([name, , cost], i) => console.log(row(name, cost, times[i])));
    const portableLayer = compact.cost(size, size);
    portableLayer.flops -= sparseFlops(compact, () => compact.forward(input, cout, ctx));
    console.log(row('PAD compact, portable path', portableLayer, times[4]));
    [plain, dynamic, masked, compact, input, mask].forEach((t) => t.dispose());
  }

  // 2. MoE: dispatch vs dense.
  const N = 2048;
  const tokens = tf.randomNormal([N, 64], 0, 1, 'float32', 6) as tf.Tensor2D;
  console.log(`\nMoE FFN layer, E = 8 experts of 64 → 256 → 64 (GELU), ${N} tokens:\n`);
  console.log(
    '| routing | expert FLOPs / token (ideal) | dispatch (ms) | dense formulation (ms) |\n|---|---|---|---|',
  );
  for (const [k, capacityFactor] of [
    [1, undefined],
    [2, undefined],
    [2, 1],
    [4, undefined],
    [8, undefined],
  ] as const) {
    const moe = new MoE(64, 64, seedStream(7), {
      experts: 8,
      topK: k,
      hidden: 256,
      noisyGating: false,
      capacityFactor,
    });
    moe.router.gate.assign(tf.randomNormal([64, 8], 0, 1, 'float32', 8));
    const layers = moe.layers.map((l) => l.asLayer());
    const gates = moe.router.forward(tokens, ctx).gates;
    const [dispatch, dense] = medians([
      () => dispatchExperts(tokens, gates, layers, 'gelu'),
      () => mixExperts(tokens, gates, layers, 'gelu'),
    ]);
    const perToken = (moe.cost().flops - 2 * 64 * 8) / 1e3;
    const name = `top-${k}${capacityFactor ? `, capacity factor ${capacityFactor}` : ''}`;
    console.log(`| ${name} | ${perToken.toFixed(1)} k | ${dispatch.toFixed(1)} | ${dense.toFixed(1)} |`);
    gates.dispose();
    moe.dispose();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});
