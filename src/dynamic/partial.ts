/**
 * Partially dynamic layers (PAD-Net, Song et al., ACL 2023, §3): a binary mask M with the shape
 * of ONE kernel / expert weight, shared by all K kernels or E experts, says which elements are
 * dynamic (M = 1) and which are static (M = 0). Intrinsic parameters: the dynamic factors W_k
 * and ONE static tensor W_s. Computed parameter (eq. 4):
 *
 *   Ŵ(x) = λ_d · M ⊙ Σ_k α_k(x) W_k  +  λ_s · (1 − M) ⊙ W_s,    λ_d = 2·sigmoid(φ), λ_s = 2 − λ_d
 *
 * with one scalar φ per layer, init 0 (λ_s = λ_d = 1). M = 1, φ = 0 is exactly the fully dynamic
 * layer; M = 0 is a static layer with weight λ_s·W_s. M is a module buffer (saved in
 * checkpoints, set by imp.ts, never touched by the optimizer); as a real-valued tensor the loss is
 * differentiable in it, which is what IMP's scores are. Like every sorted layer, a PAD conv is
 * elastic: a sub-model uses the first Cin' × Cout' channels of W_k, W_s and M alike.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from '../nn/module.js';
import { Linear } from '../nn/linear.js';
import { FeedForward } from '../nn/ffn.js';
import { kaimingNormal, uniformFanIn } from '../nn/init.js';
import { convOutSize } from '../nn/conv2d.js';
import { prefix } from '../sorted/slice.js';
import {
  DynamicConv2d,
  KernelAttention,
  temperatureOf,
  type ConvGeometry,
  type DynamicConvOptions,
} from './dynamic_conv.js';
import {
  MoE,
  checkFullWidth,
  dispatchExperts,
  type ExpertLayer,
  type MoEOptions,
  type MoEOutput,
} from './moe.js';
import type { Cost } from '../sorted/cost.js';

/**
 * Which of the two scale factors is learned (the paper's ablation of λ). φ is trainable unless 'none'.
 *  - 'both' (default, the paper's method): λ_d = 2σ(φ) and λ_s = 2 − λ_d, tied by λ_s + λ_d = 2;
 *  - 'dynamic-only': λ_d = 2σ(φ) learned, λ_s fixed to 1;
 *  - 'static-only':  λ_s = 2 − 2σ(φ) learned, λ_d fixed to 1;
 *  - 'none': λ_d = λ_s = 1 (φ stays 0).
 * All four give λ_d = λ_s = 1 at φ = 0.
 */
export type LambdaMode = 'none' | 'static-only' | 'dynamic-only' | 'both';
export const LAMBDA_MODES: readonly LambdaMode[] = ['none', 'static-only', 'dynamic-only', 'both'];

export interface Scales {
  lambdaD: tf.Scalar;
  lambdaS: tf.Scalar;
}

export function scales(phi: tf.Tensor, mode: LambdaMode): Scales {
  const one = tf.scalar(1);
  const twoSigmoid = tf.mul(2, tf.sigmoid(phi)) as tf.Scalar; // 2σ(φ)
  switch (mode) {
    case 'both':
      return { lambdaD: twoSigmoid, lambdaS: tf.sub(2, twoSigmoid) };
    case 'dynamic-only':
      return { lambdaD: twoSigmoid, lambdaS: one };
    case 'static-only':
      return { lambdaD: one, lambdaS: tf.sub(2, twoSigmoid) };
    case 'none':
      return { lambdaD: one, lambdaS: one };
  }
}

/** Scale values as plain numbers, for reports. */
export function scaleValues(layer: PadLayer): { lambdaD: number; lambdaS: number } {
  return tf.tidy(() => {
    const { lambdaD, lambdaS } = scales(layer.phi, layer.lambdaMode);
    return { lambdaD: lambdaD.dataSync()[0], lambdaS: lambdaS.dataSync()[0] };
  });
}

/** What IMP and post-processing need from a PAD layer. */
export interface PadLayer {
  readonly name: string;
  /** One mask per partitioned weight (1 for a conv or linear experts, 2 for FFN experts), 1 = dynamic. */
  readonly masks: readonly tf.Variable[];
  readonly phi: tf.Variable;
  readonly lambdaMode: LambdaMode;
}

export function isPadLayer(m: Module): m is Module & PadLayer {
  return m instanceof PadConv2d || m instanceof PadMoE;
}

/** Every PAD layer of a model, in registration order. */
export function padLayers(model: Module): (Module & PadLayer)[] {
  return model
    .namedModules()
    .map(([, m]) => m)
    .filter(isPadLayer);
}

/** Sets a mask from a 0/1 array (e.g. a saved partition), checking its size. */
export function setMask(mask: tf.Variable, values: ArrayLike<number>, where: string): void {
  if (values.length !== mask.size) {
    throw new Error(
      `${where}: mask has ${mask.size} elements ([${mask.shape.join(', ')}]), got ${values.length} values`,
    );
  }
  tf.tidy(() => mask.assign(tf.tensor(Array.from(values), mask.shape)));
}

export interface PadConvOptions extends DynamicConvOptions {
  lambdaMode?: LambdaMode;
}

/**
 * A partially dynamic DY-Conv. Children: `dynamic` (the K kernels and the attention, a
 * DynamicConv2d); parameters: `static` W_s [kh, kw, Cin, Cout], `phi`; buffer: `mask` M (W_s's shape).
 */
export class PadConv2d extends Module implements PadLayer {
  readonly dynamic: DynamicConv2d;
  readonly staticWeight: tf.Variable;
  readonly mask: tf.Variable;
  readonly phi: tf.Variable;
  readonly lambdaMode: LambdaMode;
  readonly name: string;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    seed: () => number,
    opts: PadConvOptions = {},
  ) {
    super();
    this.name = opts.name ?? 'padconv';
    this.lambdaMode = opts.lambdaMode ?? 'both';
    this.dynamic = this.addChild(
      'dynamic',
      new DynamicConv2d(inChannels, outChannels, kernel, seed, { ...opts, name: this.name }),
    );
    const shape = [kernel, kernel, inChannels, outChannels];
    this.staticWeight = this.addParam('static', kaimingNormal(shape, kernel * kernel * inChannels, seed()));
    this.mask = this.addBuffer('mask', tf.ones(shape));
    this.phi = this.addParam('phi', tf.scalar(0), this.lambdaMode !== 'none');
  }

  get masks(): readonly tf.Variable[] {
    return [this.mask];
  }

  /** Ŵ(x) per sample for the first cin × out channels, flattened: [B, kh·kw·cin·out]. */
  kernels(x: tf.Tensor4D, out: number, ctx: ForwardContext): tf.Tensor2D {
    const cin = this.dynamic.checkInput(x, out);
    const box = [-1, -1, cin, out];
    const P = this.kernel * this.kernel * cin * out;
    const alpha = this.dynamic.attention.forward(x, temperatureOf(ctx)); // [B, K]
    const m = tf.reshape(prefix(this.mask, box, this.name), [1, P]);
    const w = tf.reshape(prefix(this.staticWeight, box, this.name), [1, P]);
    const { lambdaD, lambdaS } = scales(this.phi, this.lambdaMode);
    const dynamicPart = tf.mul(lambdaD, tf.mul(m, this.dynamic.aggregate(alpha, cin, out))); // [B, P]
    const staticPart = tf.mul(lambdaS, tf.mul(tf.sub(1, m), w)); // [1, P]
    return tf.add(dynamicPart, staticPart) as tf.Tensor2D;
  }

  forward(x: tf.Tensor4D, out: number, ctx: ForwardContext): tf.Tensor4D {
    return this.dynamic.convolve(x, this.kernels(x, out, ctx), out);
  }

  /**
   * Cost with the current mask of the first cin × cout channels, as the compact layer
   * (compact.ts) runs it: |W|(1 + (K−1)κ) + attention parameters. The deployed cost, not the
   * masked layer's own (which computes all K kernels): evaluation and `pick` budget what ships.
   */
  cost(h: number, w: number, cin = this.inChannels, cout = this.outChannels): Cost {
    const nnz = tf.tidy(() => tf.sum(prefix(this.mask, [-1, -1, cin, cout], this.name)).dataSync()[0]);
    const d = this.dynamic;
    const shape = {
      inChannels: cin,
      outChannels: cout,
      kernels: d.kernels,
      reduction: d.reduction,
      geometry: d.geometry,
    };
    return padConvCost(shape, nnz, h, w);
  }
}

/** What the cost of a (PAD) dynamic conv depends on. */
export interface DynamicConvShape {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernels: number;
  readonly reduction: number;
  readonly geometry: ConvGeometry;
}

/** Flat positions of a mask's 1s (dynamic) and 0s (static), row-major. */
export interface MaskLayout {
  dynamic: Int32Array;
  static: Int32Array;
}

export function maskLayout(mask: ArrayLike<number>): MaskLayout {
  const dynamic: number[] = [];
  const fixed: number[] = [];
  for (let p = 0; p < mask.length; p++) (mask[p] > 0.5 ? dynamic : fixed).push(p);
  return { dynamic: Int32Array.from(dynamic), static: Int32Array.from(fixed) };
}

/**
 * Cost of a compact PAD conv (compact.ts) with `dynamicCount` dynamic elements. Parameters: K
 * values per dynamic element, one per static element, the attention: the paper's
 * |W|(1 + (K−1)κ) + attention. FLOPs per sample, as compact.ts runs them with the native kernels:
 * the attention, the aggregation over the dynamic elements only (2·K·nnz, the paper's count), the
 * static part as one dense convolution (2·|W| per output position: its kernel is zero at the
 * dynamic positions, but a plain convolution multiplies them anyway) and the sparse dynamic part
 * (2·nnz per output position). So a compact layer does (1 + κ) times a static conv's multiply-adds
 * (plus attention and aggregation); it is faster than DY-Conv because both parts run as plain
 * vectorised loops, not because it does fewer FLOPs. (The portable path, without the addon, runs
 * one dense per-sample convolution instead: 2·|W| per output position.)
 */
export function padConvCost(layer: DynamicConvShape, dynamicCount: number, h: number, w: number): Cost {
  const { kernel: k, stride, padding } = layer.geometry;
  const size = k * k * layer.inChannels * layer.outChannels;
  const attention = KernelAttention.cost(layer.inChannels, layer.kernels, layer.reduction, h, w);
  const outputs = convOutSize(h, k, stride, padding) * convOutSize(w, k, stride, padding);
  const staticConv = dynamicCount < size ? 2 * size * outputs : 0;
  return {
    params: layer.kernels * dynamicCount + (size - dynamicCount) + attention.params,
    flops: 2 * layer.kernels * dynamicCount + staticConv + 2 * dynamicCount * outputs + attention.flops,
  };
}

export interface PadMoEOptions extends MoEOptions {
  lambdaMode?: LambdaMode;
}

/**
 * A partially dynamic MoE: per expert layer, W'_e = λ_d M ⊙ W_e + λ_s (1 − M) ⊙ W_s with M and W_s
 * of ONE expert's weight shape [out, in]. The static part is the same for all experts, so it runs
 * as one shared matMul per token (mixExperts' `shared`), weighted by Σ gates (= 1 without a
 * capacity limit). Biases stay per expert (fully dynamic); only weights are partitioned.
 * Children: `moe` (router and experts); parameters `${layer}.static`, `${layer}.mask`, `phi`, where
 * layer is 'expert' (linear experts) or 'up' / 'down' (FFN experts).
 */
export class PadMoE extends Module implements PadLayer {
  readonly moe: MoE;
  readonly staticWeights: tf.Variable[];
  readonly masks: tf.Variable[];
  readonly phi: tf.Variable;
  readonly lambdaMode: LambdaMode;
  readonly name: string;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    seed: () => number,
    opts: PadMoEOptions = {},
  ) {
    super();
    this.name = opts.name ?? 'padmoe';
    this.lambdaMode = opts.lambdaMode ?? 'both';
    this.moe = this.addChild('moe', new MoE(inFeatures, outFeatures, seed, { ...opts, name: this.name }));
    const layerNames = this.moe.layers.length === 1 ? ['expert'] : ['up', 'down'];
    this.staticWeights = this.moe.layers.map((l, i) =>
      this.addParam(
        `${layerNames[i]}.static`,
        uniformFanIn([l.outFeatures, l.inFeatures], l.inFeatures, seed()),
      ),
    );
    this.masks = this.moe.layers.map((l, i) =>
      this.addBuffer(`${layerNames[i]}.mask`, tf.ones([l.outFeatures, l.inFeatures])),
    );
    this.phi = this.addParam('phi', tf.scalar(0), this.lambdaMode !== 'none');
  }

  /** The experts' dynamic parts λ_d M ⊙ W_e and the shared static parts λ_s (1 − M) ⊙ W_s, per layer. */
  parts(): { dynamic: ExpertLayer[]; shared: tf.Tensor2D[] } {
    const { lambdaD, lambdaS } = scales(this.phi, this.lambdaMode);
    const dynamic = this.moe.layers.map((l, i) => ({
      weight: tf.mul(lambdaD, tf.mul(this.masks[i], l.weight)) as tf.Tensor3D, // M [out, in] broadcasts over E
      bias: l.bias as tf.Tensor2D,
    }));
    const shared = this.staticWeights.map(
      (s, i) => tf.mul(lambdaS, tf.mul(tf.sub(1, this.masks[i]), s)) as tf.Tensor2D,
    );
    return { dynamic, shared };
  }

  /** A block's FFN (BlockFfn): y at the experts' full width; the aux loss goes to ctx.aux. */
  forward(x: tf.Tensor, hidden: number, ctx: ForwardContext): tf.Tensor {
    checkFullWidth(this.name, hidden, this.moe.hidden ?? this.outFeatures);
    return this.routed(x, ctx).y;
  }

  /** y with the routing (see MoE.routed). */
  routed(x: tf.Tensor, ctx: ForwardContext): MoEOutput {
    const tokens = this.moe.tokens(x);
    const { gates, auxLoss, routerLogits } = this.moe.router.forward(tokens, ctx);
    ctx.aux?.add(auxLoss);
    const { dynamic, shared } = this.parts();
    const y = dispatchExperts(tokens, gates, dynamic, this.moe.activation, shared);
    return { y: this.moe.unflatten(y, x), auxLoss, routerLogits };
  }

  /** Copies a dense layer into every expert AND into W_s, so that the layer starts equal to it. */
  upcycle(dense: Linear | FeedForward): void {
    this.moe.upcycle(dense);
    const source = dense instanceof Linear ? [dense] : [dense.up, dense.down];
    source.forEach((lin, i) => this.staticWeights[i].assign(lin.weight));
  }

  /** Deployed cost with the current masks: per layer E·κ|W| + (1−κ)|W| weights; static FLOPs once per token. */
  cost(): Cost {
    const counts = tf.tidy(() => this.masks.map((m) => tf.sum(m).dataSync()[0]));
    return padMoECost(moeShape(this.moe), counts);
  }
}

/** What the cost of a (PAD) MoE depends on. */
export interface MoEShape {
  readonly experts: number;
  readonly topK: number;
  readonly inFeatures: number;
  readonly routerParams: number;
  readonly layers: readonly { inFeatures: number; outFeatures: number }[];
}

export function moeShape(moe: MoE): MoEShape {
  return {
    experts: moe.experts,
    topK: moe.topK,
    inFeatures: moe.inFeatures,
    routerParams: moe.router.parameterCount(),
    layers: moe.layers.map((l) => ({ inFeatures: l.inFeatures, outFeatures: l.outFeatures })),
  };
}

/**
 * Deployed cost of a PAD-MoE with `dynamicCounts[l]` dynamic elements in expert layer l.
 * Parameters: per layer E·nnz + (|W| − nnz) weights and E biases, plus the router. FLOPs per token:
 * those of an ideal top-k dispatch, as MoE.cost: each chosen expert's W'_e is a dense matrix, so
 * partitioning saves parameters, not multiply-adds (this code's dense formulation runs all E).
 */
export function padMoECost(moe: MoEShape, dynamicCounts: readonly number[]): Cost {
  const E = moe.experts;
  let params = moe.routerParams;
  let flops = 2 * moe.inFeatures * E;
  moe.layers.forEach((l, i) => {
    const size = l.inFeatures * l.outFeatures;
    params += E * dynamicCounts[i] + (size - dynamicCounts[i]) + E * l.outFeatures;
    // The k chosen experts' weights, plus the static part once per token (shared).
    flops += moe.topK * (2 * size + l.outFeatures) + (dynamicCounts[i] < size ? 2 * size : 0);
  });
  return { params, flops };
}
