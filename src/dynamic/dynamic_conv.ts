/**
 * Dynamic convolution (DY-Conv, Chen et al. 2020, "Dynamic Convolution: Attention over
 * Convolution Kernels"): K kernels W_k and a per-sample attention α(x) over them,
 *
 *   α(x) = softmax(fc2(relu(fc1(avgpool(x)))) / T),   W(x) = Σ_k α_k(x) W_k,   y = W(x) ⊛ x.
 *
 * The per-sample convolution runs WITHOUT a per-sample loop: im2col turns x into patches
 * [B, H'W', kh·kw·Cin] (via a depthwise conv) and one batched matMul applies each sample's kernel
 * [B, kh·kw·Cin, Cout].
 * Every tensor stays at rank ≤ 4 (the WebGPU backend breaks on rank-5 pads).
 *
 * Memory, per layer and batch of B (float32):
 *  - patches: B·H'·W'·kh·kw·Cin values, i.e. kh·kw (= 9 for 3×3) times the input activation,
 *    and kept for the backward pass;
 *  - per-sample kernels: B·kh·kw·Cin·Cout values (one kernel per sample);
 *  - kernel aggregation: one [B, K] × [K, kh·kw·Cin·Cout] matMul, 2·K·|W| FLOPs per sample.
 * The alternative Σ_k α_k (W_k ⊛ x) needs no patches but K full convolutions (K× the FLOPs and
 * K outputs in memory); for small Cout·K the im2col path is the cheaper one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from '../nn/module.js';
import { Linear } from '../nn/linear.js';
import { convOutSize, type Padding } from '../nn/conv2d.js';
import { kaimingNormal } from '../nn/init.js';
import { globalAvgPool } from '../nn/functional.js';
import { checkUnits, prefix } from '../sorted/slice.js';
import { perSampleConv2d, type ConvGeometry } from '../engine/ops/per_sample_conv2d.js';
import type { Cost } from '../sorted/cost.js';

/** The attention temperature of a forward pass (ctx.temperature, default 1). */
export function temperatureOf(ctx: ForwardContext): number {
  const t = ctx.temperature ?? 1;
  if (!(t > 0)) throw new Error(`temperature ${t} must be > 0`);
  return t;
}

export type { ConvGeometry } from '../engine/ops/per_sample_conv2d.js';
export { im2col, perSampleConv2d } from '../engine/ops/per_sample_conv2d.js';

/**
 * The kernel attention of DY-Conv: global average pool → fc Cin→max(1, ⌊Cin/r⌋) → ReLU → fc →K
 * → softmax(logits / T). The two fully connected layers are the paper's 1×1 convolutions on a
 * 1×1 map.
 */
export class KernelAttention extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(
    readonly inChannels: number,
    readonly kernels: number,
    readonly reduction: number,
    seed: () => number,
    readonly name = 'attention',
  ) {
    super();
    const hidden = KernelAttention.hidden(inChannels, reduction);
    this.fc1 = this.addChild('fc1', new Linear(inChannels, hidden, seed, { name: `${name}.fc1` }));
    this.fc2 = this.addChild('fc2', new Linear(hidden, kernels, seed, { name: `${name}.fc2` }));
  }

  static hidden(inChannels: number, reduction: number): number {
    return Math.max(1, Math.floor(inChannels / reduction));
  }

  /**
   * x: [B, H, W, Cin'] → α: [B, K], rows sum to 1. Elastic like the convolution it serves: with
   * Cin' < Cin input channels it uses the first max(1, ⌊Cin'/r⌋) hidden units, which is exactly
   * the attention of a standalone layer with Cin' inputs (so extraction keeps outputs).
   */
  forward(x: tf.Tensor4D, temperature: number): tf.Tensor2D {
    const hidden = KernelAttention.hidden(x.shape[3], this.reduction);
    const logits = this.fc2.forward(tf.relu(this.fc1.forward(globalAvgPool(x), hidden)));
    return tf.softmax(tf.div(logits, temperature)) as tf.Tensor2D;
  }

  static cost(cin: number, k: number, reduction: number, h: number, w: number): Cost {
    const hidden = KernelAttention.hidden(cin, reduction);
    const fc1 = Linear.cost(cin, hidden);
    const fc2 = Linear.cost(hidden, k);
    // Pooling: one add per input value; softmax ≈ 3 per logit.
    return { params: fc1.params + fc2.params, flops: cin * h * w + fc1.flops + hidden + fc2.flops + 3 * k };
  }
}

export interface DynamicConvOptions {
  /** K, the number of kernels. Default 4. */
  kernels?: number;
  /** r, the attention's reduction ratio. Default 4. */
  reduction?: number;
  stride?: number;
  padding?: Padding;
  name?: string;
}

/**
 * A DY-Conv layer, no bias (it is followed by BatchNorm). weight: [K, kh, kw, Cin, Cout], each
 * W_k Kaiming-initialised on its own as in Chen et al.
 *
 * ```ts
 * const conv = new DynamicConv2d(16, 32, 3, seedStream(1), { kernels: 4 });
 * const y = conv.forward(x, 32, subModelContext(FULL, 'train', { temperature: 30 })); // [B, H, W, 32]
 * ```
 */
export class DynamicConv2d extends Module {
  readonly weight: tf.Variable;
  readonly attention: KernelAttention;
  readonly geometry: ConvGeometry;
  readonly kernels: number;
  readonly reduction: number;
  readonly name: string;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    seed: () => number,
    opts: DynamicConvOptions = {},
  ) {
    super();
    this.name = opts.name ?? 'dyconv';
    this.kernels = opts.kernels ?? 4;
    this.reduction = opts.reduction ?? 4;
    if (!Number.isInteger(this.kernels) || this.kernels < 1) {
      throw new Error(`${this.name}: kernels K = ${this.kernels} must be a positive integer`);
    }
    this.geometry = { kernel, stride: opts.stride ?? 1, padding: opts.padding ?? 'same' };
    const fanIn = kernel * kernel * inChannels;
    this.weight = this.addParam(
      'weight',
      kaimingNormal([this.kernels, kernel, kernel, inChannels, outChannels], fanIn, seed()),
    );
    this.attention = this.addChild(
      'attention',
      new KernelAttention(inChannels, this.kernels, this.reduction, seed, `${this.name}.attention`),
    );
  }

  /** Elements of ONE kernel: kh·kw·Cin·Cout. */
  get kernelSize(): number {
    return this.kernel * this.kernel * this.inChannels * this.outChannels;
  }

  /** Checks x [B, H, W, Cin'] (Cin' ≤ Cin) and `out` ≤ Cout; returns Cin'. */
  checkInput(x: tf.Tensor, out = this.outChannels): number {
    if (x.rank !== 4) {
      throw new Error(
        `${this.name}: input must be [B, H, W, ${this.inChannels}], got [${x.shape.join(', ')}]`,
      );
    }
    checkUnits(out, this.outChannels, this.name, 'channels');
    return checkUnits(x.shape[3] as number, this.inChannels, this.name, 'input channels');
  }

  /** The K kernels W[:, :, :, :cin, :cout] as rows: [K, kh·kw·cin·cout]. */
  flatKernels(cin = this.inChannels, cout = this.outChannels): tf.Tensor2D {
    const w = prefix(this.weight, [-1, -1, -1, cin, cout], this.name);
    return tf.reshape(w, [this.kernels, this.kernel * this.kernel * cin * cout]);
  }

  /** Σ_k α_k W_k per sample: α [B, K] → [B, kh·kw·cin·cout]. */
  aggregate(alpha: tf.Tensor2D, cin = this.inChannels, cout = this.outChannels): tf.Tensor2D {
    return tf.matMul(alpha, this.flatKernels(cin, cout));
  }

  /** Applies per-sample flat kernels [B, kh·kw·cin·cout] to x [B, H, W, cin]. */
  convolve(x: tf.Tensor4D, flat: tf.Tensor2D, cout = this.outChannels): tf.Tensor4D {
    const [B, , , cin] = x.shape;
    const kernels = tf.reshape(flat, [B, this.kernel * this.kernel * cin, cout]);
    return perSampleConv2d(x, kernels as tf.Tensor3D, this.geometry);
  }

  /** x: [B, H, W, Cin'] → [B, H', W', out] with the first Cin' × out channels of every kernel. */
  forward(x: tf.Tensor4D, out: number, ctx: ForwardContext): tf.Tensor4D {
    const cin = this.checkInput(x, out);
    const alpha = this.attention.forward(x, temperatureOf(ctx)); // [B, K]
    return this.convolve(x, this.aggregate(alpha, cin, out), out);
  }

  /** Parameters and FLOPs per sample for an h×w input, with cin × cout active channels. */
  cost(h: number, w: number, cin = this.inChannels, cout = this.outChannels): Cost {
    const { kernel: k, stride, padding } = this.geometry;
    const size = k * k * cin * cout;
    const attention = KernelAttention.cost(cin, this.kernels, this.reduction, h, w);
    const outputs = convOutSize(h, k, stride, padding) * convOutSize(w, k, stride, padding);
    return {
      params: this.kernels * size + attention.params,
      flops: 2 * this.kernels * size + 2 * size * outputs + attention.flops,
    };
  }
}
