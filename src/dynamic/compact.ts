/**
 * Post-processing of PAD layers for deployment (PAD-Net §3.3): after partitioning, the dynamic
 * factors W_k are only needed where M = 1 and the static W_s only where M = 0, so each is stored
 * packed (its values at those positions, in row-major order; the positions are the mask, 1 bit
 * per element, not counted as parameters) and λ is folded into the values. Deployed parameters
 * of a PAD layer: |W|·(1 + (K−1)·κ) + attention/router.
 *
 * The deployed layers are for inference: they store the packed values (what a checkpoint holds
 * and `parameterCount()` counts) and unpack them once at construction into dense buffers that
 * run fast (the static kernel; the dynamic kernels with zeros at static positions; for MoE the
 * expert weights). Their outputs equal the masked layer's. The saving is in stored parameters;
 * per-sample compute is that of the fully dynamic layer (see padConvCost and padMoECost in partial.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../nn/module.js';
import { BatchNorm2d } from '../nn/batchnorm.js';
import { KernelAttention, perSampleConv2d, type ConvGeometry } from './dynamic_conv.js';
import { Router, mixExperts, type ExpertLayer, type MoEOutput } from './moe.js';
import { PadConv2d, PadMoE, moeShape, padConvCost, padMoECost, scales, type MoEShape } from './partial.js';
import { temperatureOf, type DynamicContext, type DynamicModel } from './context.js';
import type { Activation } from '../nn/functional.js';
import type { ForwardContext } from '../nn/module.js';
import type { Cost } from '../sorted/cost.js';

/** Positions of the 1s and of the 0s of a 0/1 mask, row-major. */
function maskPositions(mask: tf.Tensor): { dynamic: Int32Array; static: Int32Array } {
  const m = mask.dataSync();
  const dynamic: number[] = [];
  const fixed: number[] = [];
  for (let i = 0; i < m.length; i++) (m[i] > 0.5 ? dynamic : fixed).push(i);
  return { dynamic: Int32Array.from(dynamic), static: Int32Array.from(fixed) };
}

/** Copies every parameter of `from` into the same-named parameter of `to`. */
function copyParameters(from: Module, to: Module): void {
  const source = new Map(from.namedParameters());
  for (const [name, v] of to.namedParameters()) {
    const s = source.get(name);
    if (!s) throw new Error(`copyParameters: source has no parameter '${name}'`);
    v.assign(s);
  }
}

/**
 * For each sample, a dense flat kernel from packed dynamic values [B, n] placed at `positions`
 * (zeros elsewhere): gather from [values | 0] with index n for the positions not listed.
 */
function unpack(values: tf.Tensor2D, positions: Int32Array, size: number): tf.Tensor2D {
  const [rows, n] = values.shape;
  const index = new Int32Array(size).fill(n);
  positions.forEach((p, i) => (index[p] = i));
  const padded = tf.concat([values, tf.zeros([rows, 1])], 1);
  return tf.gather(padded, tf.tensor1d(index, 'int32'), 1) as tf.Tensor2D;
}

/** A deployed PAD conv: attention, packed dynamic values [K, nnz] (λ_d folded), packed static values (λ_s folded). */
export class CompactPadConv2d extends Module {
  readonly attention: KernelAttention;
  readonly dynamicValues: tf.Variable;
  readonly staticValues: tf.Variable;
  readonly dynamicPositions: Int32Array;
  readonly geometry: ConvGeometry;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernels: number;
  readonly reduction: number;
  readonly name: string;
  /** λ_s (1 − M) ⊙ W_s as a dense flat kernel [1, P], precomputed. */
  private readonly staticKernel: tf.Tensor2D;
  /** λ_d M ⊙ W_k as dense flat kernels [K, P] (zeros at static positions), unpacked once. */
  private readonly dynamicKernels: tf.Tensor2D;
  readonly kernelSize: number;

  constructor(source: PadConv2d) {
    super();
    const dyn = source.dynamic;
    this.name = source.name;
    this.geometry = dyn.geometry;
    this.inChannels = dyn.inChannels;
    this.outChannels = dyn.outChannels;
    this.kernels = dyn.kernels;
    this.reduction = dyn.reduction;
    this.kernelSize = dyn.kernelSize;
    this.attention = this.addChild(
      'attention',
      new KernelAttention(dyn.inChannels, dyn.kernels, dyn.reduction, () => 1, `${this.name}.attention`),
    );
    copyParameters(dyn.attention, this.attention);
    const positions = maskPositions(source.mask);
    this.dynamicPositions = positions.dynamic;
    const { dynamicValues, staticValues } = tf.tidy(() => {
      const { lambdaD, lambdaS } = scales(source.phi, source.lambdaMode);
      const flat = dyn.flatKernels(); // [K, P]
      const staticFlat = tf.reshape(source.staticWeight, [this.kernelSize]);
      return {
        dynamicValues: tf.mul(lambdaD, tf.gather(flat, tf.tensor1d(positions.dynamic, 'int32'), 1)),
        staticValues: tf.mul(lambdaS, tf.gather(staticFlat, tf.tensor1d(positions.static, 'int32'))),
      };
    });
    this.dynamicValues = this.addParam('dynamicValues', dynamicValues, false);
    this.staticValues = this.addParam('staticValues', staticValues, false);
    this.dynamicKernels = tf.tidy(() =>
      unpack(this.dynamicValues as tf.Tensor2D, positions.dynamic, this.kernelSize),
    );
    this.staticKernel = tf.tidy(() =>
      unpack(tf.reshape(this.staticValues, [1, positions.static.length]), positions.static, this.kernelSize),
    );
  }

  /** Fraction of kernel elements that are dynamic. */
  get kappa(): number {
    return this.dynamicPositions.length / this.kernelSize;
  }

  forward(x: tf.Tensor4D, ctx: DynamicContext): tf.Tensor4D {
    if (x.rank !== 4 || x.shape[3] !== this.inChannels) {
      throw new Error(
        `${this.name}: input must be [B, H, W, ${this.inChannels}], got [${x.shape.join(', ')}]`,
      );
    }
    const B = x.shape[0];
    const alpha = this.attention.forward(x, temperatureOf(ctx)); // [B, K]
    // Dense aggregation over the unpacked dynamic kernels: the same K·|W| multiply-adds as DY-Conv.
    // Aggregating only the κ·K·|W| packed values and scattering them (a gather) is the paper's
    // count, but on WASM the gather costs more than it saves (measured: 60 ms vs 25 ms for a
    // 32→32 3×3 layer at B = 64); the aggregation is ~1% of the layer's FLOPs either way.
    const kernel = tf.add(tf.matMul(alpha, this.dynamicKernels), this.staticKernel); // [B, P]
    const k = this.geometry.kernel;
    return perSampleConv2d(
      x,
      tf.reshape(kernel, [B, k * k * this.inChannels, this.outChannels]),
      this.geometry,
    );
  }

  cost(h: number, w: number): Cost {
    return padConvCost(this, this.dynamicPositions.length, h, w);
  }

  override dispose(): void {
    super.dispose();
    this.staticKernel.dispose();
    this.dynamicKernels.dispose();
  }
}

/**
 * A deployed PAD-MoE: the router, and per expert layer packed dynamic values [E, nnz] (λ_d
 * folded), packed static values (λ_s folded) and the per-expert biases. The expert weights do not
 * depend on the input, so they are unpacked once here; the static part is one shared matMul per token.
 */
export class CompactPadMoE extends Module {
  readonly router: Router;
  readonly dynamicValues: tf.Variable[];
  readonly staticValues: tf.Variable[];
  readonly biases: tf.Variable[];
  readonly dynamicCounts: number[];
  readonly experts: number;
  readonly topK: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly activation: Activation;
  readonly name: string;
  private readonly shape: MoEShape;
  private readonly unpacked: ExpertLayer[];
  private readonly shared: tf.Tensor2D[];

  constructor(pad: PadMoE) {
    super();
    const moe = pad.moe;
    this.name = pad.name;
    this.experts = moe.experts;
    this.topK = moe.topK;
    this.inFeatures = moe.inFeatures;
    this.outFeatures = moe.outFeatures;
    this.activation = moe.activation;
    this.router = this.addChild('router', new Router(moe.inFeatures, moe.experts, moe.topK, moe.router.opts));
    copyParameters(moe.router, this.router);
    const E = moe.experts;
    const { lambdaD, lambdaS } = tf.tidy(() => {
      const s = scales(pad.phi, pad.lambdaMode);
      return { lambdaD: s.lambdaD.dataSync()[0], lambdaS: s.lambdaS.dataSync()[0] };
    });
    this.dynamicValues = [];
    this.staticValues = [];
    this.biases = [];
    this.dynamicCounts = [];
    this.unpacked = [];
    this.shared = [];
    moe.layers.forEach((layer, i) => {
      const size = layer.inFeatures * layer.outFeatures;
      const positions = maskPositions(pad.masks[i]);
      this.dynamicCounts.push(positions.dynamic.length);
      const dv = tf.tidy(() =>
        tf.mul(
          lambdaD,
          tf.gather(tf.reshape(layer.weight, [E, size]), tf.tensor1d(positions.dynamic, 'int32'), 1),
        ),
      );
      const sv = tf.tidy(() =>
        tf.mul(
          lambdaS,
          tf.gather(tf.reshape(pad.staticWeights[i], [size]), tf.tensor1d(positions.static, 'int32')),
        ),
      );
      this.dynamicValues.push(this.addParam(`${i}.dynamicValues`, dv, false));
      this.staticValues.push(this.addParam(`${i}.staticValues`, sv, false));
      const bias = this.addParam(`${i}.bias`, tf.clone(layer.bias), false);
      this.biases.push(bias);
      const shape: [number, number] = [layer.outFeatures, layer.inFeatures];
      this.unpacked.push(
        tf.tidy(() => ({
          weight: tf.reshape(unpack(this.dynamicValues[i] as tf.Tensor2D, positions.dynamic, size), [
            E,
            ...shape,
          ]) as tf.Tensor3D,
          bias: tf.clone(bias) as tf.Tensor2D,
        })),
      );
      this.shared.push(
        tf.tidy(() =>
          tf.reshape(unpack(tf.reshape(sv, [1, positions.static.length]), positions.static, size), shape),
        ),
      );
      tf.keep(this.unpacked[i].weight);
      tf.keep(this.unpacked[i].bias);
    });
    this.shape = moeShape(moe);
  }

  forward(x: tf.Tensor, ctx: ForwardContext): MoEOutput {
    const d = x.shape[x.rank - 1];
    if (x.rank < 2 || d !== this.inFeatures) {
      throw new Error(`${this.name}: input must be [..., ${this.inFeatures}], got [${x.shape.join(', ')}]`);
    }
    const tokens = tf.reshape(x, [-1, d]) as tf.Tensor2D;
    const { gates, auxLoss, routerLogits } = this.router.forward(tokens, ctx);
    const y = mixExperts(tokens, gates, this.unpacked, this.activation, this.shared);
    return {
      y: x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), this.outFeatures]),
      auxLoss,
      routerLogits,
    };
  }

  cost(): Cost {
    return padMoECost(this.shape, this.dynamicCounts);
  }

  override dispose(): void {
    super.dispose();
    for (const l of this.unpacked) {
      l.weight.dispose();
      l.bias.dispose();
    }
    this.shared.forEach((s) => s.dispose());
  }
}

/**
 * Copies every parameter of `source` whose name and shape `target` shares, and the BatchNorm
 * statistics of same-named BatchNorm layers: moves the non-PAD state of a model into its
 * deployed copy. Returns the number of parameters copied.
 */
export function copyMatchingState(source: Module, target: Module): number {
  const params = new Map(source.namedParameters());
  let copied = 0;
  for (const [name, v] of target.namedParameters()) {
    const s = params.get(name);
    if (s && s.shape.length === v.shape.length && s.shape.every((d, i) => d === v.shape[i])) {
      v.assign(s);
      copied++;
    }
  }
  const norms = new Map(
    source.namedModules().filter(([, m]) => m instanceof BatchNorm2d) as [string, BatchNorm2d][],
  );
  for (const [name, m] of target.namedModules()) {
    const s = norms.get(name);
    if (!(m instanceof BatchNorm2d) || !s) continue;
    m.resetStats();
    for (const [key, st] of s.stats) {
      m.stats.set(key, { mean: tf.clone(st.mean), variance: tf.clone(st.variance), count: st.count });
    }
  }
  return copied;
}

export interface Variant {
  name: string;
  /** The DEPLOYED model (for PAD, the result of `deploy()`). */
  model: DynamicModel;
  /** Test accuracy, when known. */
  accuracy?: number;
}

export interface VariantRow {
  name: string;
  /** Deployed parameters (analytic; equals parameterCount() of a deployed model). */
  params: number;
  /** Forward FLOPs per sample (analytic). */
  flops: number;
  /** Median wall time of one eval forward of the given batch, in milliseconds. */
  latencyMs: number;
  accuracy?: number;
}

/**
 * Parameters, FLOPs and measured latency of model variants side by side (static, fully dynamic,
 * PAD). Latency: median of `repeats` eval forwards of `x` after `warmup` untimed ones, on the
 * current backend; BatchNorm statistics for `key` must exist.
 *
 * ```ts
 * const rows = compareVariants([{ name: 'static', model: a }, { name: 'PAD κ=0.3', model: b.deploy() }], x);
 * ```
 */
export function compareVariants(
  variants: readonly Variant[],
  x: tf.Tensor,
  opts: { repeats?: number; warmup?: number; key?: string } = {},
): VariantRow[] {
  const repeats = opts.repeats ?? 20;
  const warmup = opts.warmup ?? 3;
  const ctx: DynamicContext = { mode: 'eval', key: opts.key ?? 'full' };
  return variants.map(({ name, model, accuracy }) => {
    const run = (): number => {
      const start = performance.now();
      tf.tidy(() => {
        model.forward(x, ctx).logits.dataSync();
      });
      return performance.now() - start;
    };
    for (let i = 0; i < warmup; i++) run();
    const times = Array.from({ length: repeats }, run).sort((a, b) => a - b);
    const { params, flops } = model.cost();
    return { name, params, flops, latencyMs: times[Math.floor(times.length / 2)], accuracy };
  });
}
