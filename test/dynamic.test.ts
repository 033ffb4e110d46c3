/**
 * PAD-Net's identities and machinery: dynamic conv against a per-sample reference, the PAD
 * identities (M = 1 → fully dynamic, M = 0 → static λ_s·W_s), ∂L/∂M against finite differences,
 * IMP's exact κ, compact = masked, MoE routing and aux loss, and the errors.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { seedStream } from '../src/nn/init.js';
import { FeedForward } from '../src/nn/ffn.js';
import { AuxLosses, type ForwardContext } from '../src/nn/module.js';
import { DynamicConv2d, perSampleConv2d } from '../src/dynamic/dynamic_conv.js';
import { MoE } from '../src/dynamic/moe.js';
import { PadConv2d, PadMoE, padLayers, setMask } from '../src/dynamic/partial.js';
import { maskGradients, partition, type LabelledBatch } from '../src/dynamic/imp.js';
import { CompactPadConv2d, CompactPadMoE } from '../src/dynamic/compact.js';
import { calibrateBatchNorm } from '../src/nn/calibrate.js';
import { temperatureAt } from '../src/train/temperature.js';
import { PadResNet, padResNetConfig, type PadResNetConfig } from '../src/models/pad_resnet.js';
import { MoETransformer, MOE_TRANSFORMER_DEFAULTS } from '../src/models/moe_transformer.js';
import { FULL } from '../src/sorted/submodel.js';
import type { BasicBlock } from '../src/nn/basic_block.js';
import { assertClose, maxAbsDiff } from './helpers.js';

before(async () => {
  await initEngine('cpu');
});

const evalCtx: ForwardContext = { mode: 'eval', key: 'full' };
const randn = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

/** Σ_k α_k W_k and tf.conv2d one sample at a time: the reference for the batched per-sample conv. */
function referenceDynamicConv(layer: DynamicConv2d, x: tf.Tensor4D, temperature: number): tf.Tensor4D {
  return tf.tidy(() => {
    const alpha = layer.attention.forward(x, temperature);
    const outs: tf.Tensor4D[] = [];
    for (let b = 0; b < x.shape[0]; b++) {
      const a = tf.reshape(tf.slice(alpha, [b, 0], [1, -1]), [layer.kernels, 1, 1, 1, 1]);
      const kernel = tf.sum(tf.mul(a, layer.weight), 0) as tf.Tensor4D; // [kh, kw, Cin, Cout]
      const xb = tf.slice(x, [b, 0, 0, 0], [1, -1, -1, -1]);
      outs.push(tf.conv2d(xb, kernel, layer.geometry.stride, layer.geometry.padding));
    }
    return tf.concat(outs, 0);
  });
}

test('dynamic conv equals a per-sample loop of tf.conv2d (strides 1 and 2, same and valid)', () => {
  for (const [stride, padding, size] of [
    [1, 'same', 6],
    [2, 'same', 7],
    [2, 'same', 6],
    [1, 'valid', 5],
    [2, 'valid', 7],
  ] as const) {
    const layer = new DynamicConv2d(3, 5, 3, seedStream(11), { kernels: 4, reduction: 2, stride, padding });
    const x = randn([3, size, size, 3], 5) as tf.Tensor4D;
    tf.tidy(() => {
      const y = layer.forward(x, 5, { ...evalCtx, temperature: 2 });
      assertClose(y, referenceDynamicConv(layer, x, 2), 1e-4, `stride ${stride} ${padding} ${size}×${size}`);
    });
    layer.dispose();
  }
});

test('attention rows sum to 1 and a high temperature makes them near uniform', () => {
  const layer = new DynamicConv2d(4, 4, 3, seedStream(3), { kernels: 4 });
  tf.tidy(() => {
    const x = tf.mul(randn([2, 5, 5, 4], 1), 10) as tf.Tensor4D;
    const hot = layer.attention.forward(x, 1000);
    assertClose(tf.sum(hot, 1), tf.ones([2]), 1e-5, 'rows sum to 1');
    assert.ok(maxAbsDiff(hot, tf.fill([2, 4], 0.25)) < 1e-2);
  });
  layer.dispose();
});

test('PAD conv: M = 1, φ = 0 is the fully dynamic layer; M = 0 is a static conv with λ_s·W_s', () => {
  const dynamic = new DynamicConv2d(3, 4, 3, seedStream(7), { kernels: 3, stride: 2 });
  const pad = new PadConv2d(3, 4, 3, seedStream(8), { kernels: 3, stride: 2 });
  // Same dynamic factors and attention.
  const source = new Map(dynamic.namedParameters());
  for (const [name, v] of pad.dynamic.namedParameters()) v.assign(source.get(name)!);
  const x = randn([4, 6, 6, 3], 2) as tf.Tensor4D;
  const ctx = { ...evalCtx, temperature: 3 };
  tf.tidy(() => assertClose(pad.forward(x, 4, ctx), dynamic.forward(x, 4, ctx), 1e-6, 'M = 1, φ = 0'));

  setMask(pad.mask, new Float32Array(pad.mask.size), 'test');
  pad.phi.assign(tf.scalar(0.7));
  const lambdaS = 2 - 2 / (1 + Math.exp(-0.7));
  tf.tidy(() => {
    const reference = tf.conv2d(x, tf.mul(lambdaS, pad.staticWeight) as tf.Tensor4D, 2, 'same');
    assertClose(pad.forward(x, 4, ctx), reference, 1e-5, 'M = 0');
  });
  dynamic.dispose();
  pad.dispose();
});

test('λ modes: all are 1 at φ = 0; only the named scale moves', () => {
  const x = randn([2, 4, 4, 2], 9) as tf.Tensor4D;
  const half = Float32Array.from({ length: 3 * 3 * 2 * 2 }, (_, i) => i % 2);
  const outputs = (['both', 'dynamic-only', 'static-only', 'none'] as const).map((lambdaMode) => {
    const pad = new PadConv2d(2, 2, 3, seedStream(4), { kernels: 2, lambdaMode });
    setMask(pad.mask, half, 'test');
    const at0 = tf.tidy(() => pad.forward(x, 2, evalCtx));
    pad.phi.assign(tf.scalar(1));
    const at1 = tf.tidy(() => pad.forward(x, 2, evalCtx));
    assert.equal(pad.phi.trainable, lambdaMode !== 'none');
    pad.dispose();
    return { lambdaMode, at0, at1 };
  });
  for (const o of outputs.slice(1)) assertClose(o.at0, outputs[0].at0, 1e-6, `${o.lambdaMode} at φ = 0`);
  assert.ok(maxAbsDiff(outputs[0].at1, outputs[0].at0) > 1e-3, "'both' moves with φ");
  assertClose(outputs[3].at1, outputs[3].at0, 1e-6, "'none' ignores φ");
});

/** A tiny PAD CNN and a few labelled batches. */
function tinyCnn(conv: PadResNetConfig['conv'] = 'pad', seed = 1): PadResNet {
  return new PadResNet(
    padResNetConfig({
      inChannels: 1,
      imageSize: 8,
      stem: 3,
      widths: [4, 6],
      blocks: [1, 1],
      kernels: 3,
      reduction: 2,
      conv,
      classes: 3,
    }),
    seed,
  );
}
function imageBatches(count: number, size = 6): LabelledBatch[] {
  return Array.from({ length: count }, (_, i) => ({
    x: randn([size, 8, 8, 1], 100 + i),
    y: tf.tensor1d(
      Array.from({ length: size }, (_, j) => (i + j) % 3),
      'int32',
    ),
  }));
}

test('∂L/∂M from autodiff matches a finite-difference estimate', () => {
  const model = tinyCnn();
  const batches = imageBatches(1, 8);
  calibrateBatchNorm(
    model,
    FULL,
    'full',
    batches.map((b) => b.x),
  );
  const layer = padLayers(model)[0] as PadConv2d;
  // A partly static mask and φ ≠ 0, so both terms of (λ_d Σα W − λ_s W_s) matter.
  setMask(
    layer.mask,
    Float32Array.from({ length: layer.mask.size }, (_, i) => (i % 3 === 0 ? 0 : 1)),
    'test',
  );
  layer.phi.assign(tf.scalar(0.3));
  const grads = maskGradients(model, batches, evalCtx);
  const g = grads[0].dataSync();
  const loss = (): number =>
    tf.tidy(() => {
      const logits = model.forward(batches[0].x, FULL, evalCtx);
      return tf.losses.softmaxCrossEntropy(tf.oneHot(batches[0].y, 3), logits).dataSync()[0];
    });
  const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]));
  const largest = Math.abs(g[order[0]]);
  assert.ok(largest > 1e-5, 'gradient is not trivially zero');
  const base = Float32Array.from(layer.mask.dataSync());
  // Small ε: ReLU kinks make larger steps inexact (the loss is only piecewise smooth in M).
  const eps = 1e-3;
  for (const i of order.slice(0, 5)) {
    const at = (delta: number): number => {
      const m = Float32Array.from(base);
      m[i] += delta;
      setMask(layer.mask, m, 'test');
      return loss();
    };
    const fd = (at(eps) - at(-eps)) / (2 * eps);
    assert.ok(
      Math.abs(fd - g[i]) <= 0.05 * Math.abs(g[i]) + 0.02 * largest,
      `element ${i}: autodiff ${g[i]}, finite difference ${fd}`,
    );
  }
  setMask(layer.mask, base, 'test');
  grads.forEach((t) => t.dispose());
  model.dispose();
});

test('IMP: a global threshold keeps exactly κ dynamic; per-layer keeps κ of each mask; random too', () => {
  const model = tinyCnn();
  const batches = imageBatches(2);
  const kappa = 0.3;
  const global = partition(model, batches, { kappa, rounds: 3 });
  assert.equal(global.kept, Math.round(kappa * global.total));
  assert.ok(Math.abs(global.fraction - kappa) <= 1 / global.total);
  assert.equal(global.rounds.length, 3);
  assert.ok(
    global.rounds[0].kappa > global.rounds[1].kappa && Math.abs(global.rounds[2].kappa - kappa) < 1e-12,
  );
  assert.ok(
    global.masks.some((m) => Math.abs(m.fraction - kappa) > 0.02),
    'a global threshold lets layers differ',
  );

  const perLayer = partition(model, batches, { kappa: 0.5, threshold: 'per-layer' });
  for (const m of perLayer.masks) assert.equal(m.kept, Math.round(0.5 * m.size), m.name);

  const random = partition(model, [], { kappa, method: 'random', seed: 3 });
  assert.equal(random.kept, Math.round(kappa * random.total));
  model.dispose();
});

test('IMP rejects bad κ, rounds and models without PAD layers', () => {
  const model = tinyCnn();
  const batches = imageBatches(1);
  for (const kappa of [0, -0.1, 1.5, Number.NaN]) {
    assert.throws(() => partition(model, batches, { kappa }), /kappa .* must be in \(0, 1\]/);
  }
  assert.throws(() => partition(model, batches, { kappa: 0.5, rounds: 0 }), /rounds 0/);
  assert.throws(() => partition(model, [], { kappa: 0.5 }), /calibration batch/);
  const staticModel = tinyCnn('static');
  assert.throws(() => partition(staticModel, batches, { kappa: 0.5 }), /no PAD layers/);
  // κ = 1 is allowed: everything stays dynamic.
  assert.equal(partition(model, batches, { kappa: 1 }).fraction, 1);
  model.dispose();
  staticModel.dispose();
});

test('mismatched shapes give clear errors', () => {
  const layer = new DynamicConv2d(3, 4, 3, seedStream(1));
  assert.throws(
    () => layer.forward(randn([1, 5, 5, 3], 1) as tf.Tensor4D, 5, evalCtx),
    /channels 5 > layer size 4/,
  );
  assert.throws(
    () =>
      perSampleConv2d(
        randn([2, 5, 5, 3], 1) as tf.Tensor4D,
        tf.zeros([2, 10, 4]) as tf.Tensor3D,
        layer.geometry,
      ),
    /do not fit input/,
  );
  const pad = new PadConv2d(3, 4, 3, seedStream(1));
  assert.throws(() => setMask(pad.mask, [1, 0, 1], 'pad'), /mask has 108 elements/);
  const moe = new MoE(4, 4, seedStream(1), { experts: 4, hidden: 8 });
  assert.throws(() => moe.routed(randn([3, 5], 1), evalCtx), /input must be \[\.\.\., 4\]/);
  assert.throws(
    () => moe.upcycle(new FeedForward(4, 6, seedStream(2))),
    /dense weight \[6, 4\] != expert weight \[8, 4\]/,
  );
  assert.throws(() => new MoE(4, 4, seedStream(1), { experts: 2, topK: 3 }), /topK 3/);
  layer.dispose();
  pad.dispose();
  moe.dispose();
});

test('the compact (deployed) CNN equals the masked one and has |W|(1 + (K−1)κ) parameters per PAD conv', () => {
  const model = tinyCnn();
  const batches = imageBatches(2);
  partition(model, batches, { kappa: 0.4, rounds: 2 });
  padLayers(model).forEach((l, i) => l.phi.assign(tf.scalar(0.2 * (i + 1)))); // λ ≠ 1, to test folding
  calibrateBatchNorm(
    model,
    FULL,
    'full',
    batches.map((b) => b.x),
  );
  const deployed = model.deploy();
  const blocks = (m: PadResNet): BasicBlock[] => m.stages.items.flatMap((s) => s.items);
  assert.ok(
    blocks(deployed).every((b) => b.conv1 instanceof CompactPadConv2d && b.conv2 instanceof CompactPadConv2d),
  );
  for (const b of batches) {
    tf.tidy(() =>
      assertClose(
        deployed.forward(b.x, FULL, evalCtx),
        model.forward(b.x, FULL, evalCtx),
        1e-5,
        'compact vs masked',
      ),
    );
  }
  // Analytic deployed size equals what is stored, and follows the paper's formula per layer.
  assert.equal(deployed.parameterCount(), deployed.cost(FULL).params);
  assert.equal(deployed.cost(FULL).params, model.cost(FULL).params);
  for (const l of blocks(deployed).flatMap((b) => [b.conv1, b.conv2]) as CompactPadConv2d[]) {
    const P = l.kernelSize;
    const stored = l.dynamicValues.size + l.staticValues.size;
    assert.ok(Math.abs(stored - P * (1 + (l.shape.kernels - 1) * l.kappa)) < 1e-6);
  }
  model.dispose();
  deployed.dispose();
});

test('MoE: dense formulation equals Σ_e gate_e · expert_e(x) token by token', () => {
  const moe = new MoE(5, 3, seedStream(2), { experts: 4, topK: 2, hidden: 6, activation: 'relu' });
  moe.router.gate.assign(randn([5, 4], 3));
  const x = randn([7, 5], 4) as tf.Tensor2D;
  tf.tidy(() => {
    const { y, routerLogits } = moe.routed(x, evalCtx);
    const gates = moe.router.forward(x, evalCtx).gates.arraySync();
    const rows: tf.Tensor[] = [];
    for (let n = 0; n < 7; n++) {
      const xn = tf.slice(x, [n, 0], [1, 5]);
      let yn: tf.Tensor = tf.zeros([1, 3]);
      for (let e = 0; e < 4; e++) {
        if (gates[n][e] === 0) continue;
        const w = (l: number) => tf.squeeze(tf.slice(moe.layers[l].weight, [e, 0, 0], [1, -1, -1]), [0]);
        const b = (l: number) => tf.slice(moe.layers[l].bias, [e, 0], [1, -1]);
        const h = tf.relu(tf.add(tf.matMul(xn, w(0), false, true), b(0)));
        yn = tf.add(yn, tf.mul(gates[n][e], tf.add(tf.matMul(h, w(1), false, true), b(1))));
      }
      rows.push(yn);
    }
    assertClose(y, tf.concat(rows, 0), 1e-5, 'MoE vs per-token loop');
    assert.deepEqual(routerLogits.shape, [7, 4]);
    assert.ok(
      gates.every((g) => g.filter((v) => v > 0).length === 2),
      'exactly k experts per token',
    );
  });
  moe.dispose();
});

test('MoE: aux loss is non-zero with non-zero router gradients at initialisation (zero router weights)', () => {
  const moe = new MoE(6, 6, seedStream(5), { experts: 4, topK: 2, hidden: 8 });
  assert.equal(
    tf.tidy(() => tf.sum(tf.abs(moe.router.gate)).dataSync()[0]),
    0,
    'router starts at zero',
  );
  const x = randn([16, 6], 6);
  const ctx: ForwardContext = { mode: 'train', key: 'full', seed: seedStream(9) };
  const router = [moe.router.gate, moe.router.noise!];
  const { value, grads } = tf.variableGrads(() => moe.routed(x, ctx).auxLoss, router);
  assert.ok(value.dataSync()[0] > 0, 'aux loss > 0');
  for (const v of router)
    assert.ok(tf.tidy(() => tf.sum(tf.abs(grads[v.name])).dataSync()[0]) > 0, `∂aux/∂${v.name} ≠ 0`);
  // The task loss reaches the router too (through the top-k softmax), even at W_g = 0.
  const task = tf.variableGrads(
    () => tf.sum(tf.square(moe.routed(x, evalCtx).y)) as tf.Scalar,
    [moe.router.gate],
  );
  assert.ok(
    tf.tidy(() => tf.sum(tf.abs(task.grads[moe.router.gate.name])).dataSync()[0]) > 0,
    '∂task/∂W_g ≠ 0',
  );
  // In eval mode (no noise) every token ties on the same experts: a large aux loss to push against.
  assert.ok(tf.tidy(() => moe.routed(x, evalCtx).auxLoss.dataSync()[0]) > 0.01);
  moe.dispose();
});

test('MoE: capacity factor caps the tokens per expert', () => {
  const moe = new MoE(4, 4, seedStream(1), { experts: 4, topK: 1, capacityFactor: 1 });
  moe.router.gate.assign(
    tf.tensor2d([
      [5, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ]),
  );
  tf.tidy(() => {
    const x = tf.abs(randn([12, 4], 2)) as tf.Tensor2D; // all prefer expert 0
    const { gates } = moe.router.forward(x, evalCtx);
    const counts = tf.sum(tf.cast(tf.greater(gates, 0), 'float32'), 0).arraySync() as number[];
    assert.ok(
      counts.every((c) => c <= Math.ceil((1 * 1 * 12) / 4)),
      `counts ${counts}`,
    );
  });
  moe.dispose();
});

test('MoE upcycled from a dense FFN equals it; PAD-MoE M = 1 equals MoE, M = 0 equals a static layer', () => {
  const dense = new FeedForward(6, 10, seedStream(3), 'gelu');
  const moe = new MoE(6, 6, seedStream(4), { experts: 4, hidden: 10 });
  moe.upcycle(dense);
  moe.router.gate.assign(randn([6, 4], 8));
  const x = randn([2, 5, 6], 7);
  tf.tidy(() => assertClose(moe.routed(x, evalCtx).y, dense.forward(x), 1e-5, 'upcycled MoE vs dense'));

  const pad = new PadMoE(6, 6, seedStream(4), { experts: 4, hidden: 10 });
  const src = new Map(moe.namedParameters());
  for (const [name, v] of pad.moe.namedParameters()) v.assign(src.get(name)!);
  tf.tidy(() =>
    assertClose(pad.routed(x, evalCtx).y, moe.routed(x, evalCtx).y, 1e-6, 'PAD-MoE M = 1, φ = 0'),
  );

  // Linear experts, M = 0, zero biases: y = x (λ_s W_s)ᵀ whatever the routing.
  const linear = new PadMoE(6, 3, seedStream(5), { experts: 4 });
  linear.moe.router.gate.assign(randn([6, 4], 9));
  linear.moe.layers[0].bias.assign(tf.zeros([4, 3]));
  setMask(linear.masks[0], new Float32Array(18), 'test');
  linear.phi.assign(tf.scalar(-0.4));
  const lambdaS = 2 - 2 / (1 + Math.exp(0.4));
  tf.tidy(() => {
    const reference = tf.matMul(
      tf.reshape(x, [10, 6]),
      tf.mul(lambdaS, linear.staticWeights[0]),
      false,
      true,
    );
    assertClose(tf.reshape(linear.routed(x, evalCtx).y, [10, 3]), reference, 1e-5, 'PAD-MoE M = 0');
  });
  [dense, moe, pad, linear].forEach((m) => m.dispose());
});

test('PAD-MoE transformer: IMP keeps κ, the compact model equals the masked one', () => {
  const config = {
    ...MOE_TRANSFORMER_DEFAULTS,
    vocab: 20,
    dim: 8,
    heads: 2,
    ffn: 12,
    layers: 2,
    maxLen: 6,
    experts: 4,
    ffnMode: 'pad-moe' as const,
  };
  const model = new MoETransformer(config, 2);
  const batches: LabelledBatch[] = [0, 1].map((i) => ({
    x: tf.tensor2d(
      Array.from({ length: 4 * 6 }, (_, j) => (j * 7 + i * 3) % 20),
      [4, 6],
      'int32',
    ),
    y: tf.tensor1d([0, 1, 1, 0], 'int32'),
  }));
  for (const layer of padLayers(model)) (layer as PadMoE).moe.router.gate.assign(randn([8, 4], 3));
  const stats = partition(model, batches, { kappa: 0.5 });
  assert.equal(stats.kept, Math.round(0.5 * stats.total));
  assert.equal(stats.masks.length, 4, 'two masks (up, down) per PAD-MoE layer');
  padLayers(model).forEach((l) => l.phi.assign(tf.scalar(0.5)));
  const deployed = model.deploy();
  assert.ok(deployed.blocks.items.every((b) => b.ffn instanceof CompactPadMoE));
  tf.tidy(() => {
    const auxA = new AuxLosses();
    const auxB = new AuxLosses();
    const a = model.forward(batches[0].x, FULL, { ...evalCtx, aux: auxA });
    const b = deployed.forward(batches[0].x, FULL, { ...evalCtx, aux: auxB });
    assertClose(b, a, 1e-5, 'compact vs masked PAD-MoE transformer');
    assertClose(auxB.total(), auxA.total(), 1e-6, 'aux loss');
    assert.ok(auxA.total().dataSync()[0] > 0, 'the MoE layers put their aux losses in ctx.aux');
  });
  assert.equal(deployed.parameterCount(), deployed.cost(FULL).params);
  model.dispose();
  deployed.dispose();
});

test('temperature schedule anneals linearly from 30 to 1', () => {
  const s = { start: 30, end: 1, steps: 10 };
  assert.equal(temperatureAt(s, 0), 30);
  assert.equal(temperatureAt(s, 5), 15.5);
  assert.equal(temperatureAt(s, 10), 1);
  assert.equal(temperatureAt(s, 50), 1);
  assert.throws(() => temperatureAt(s, -1), /step -1/);
});
