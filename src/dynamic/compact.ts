/**
 * Post-processing of PAD layers for deployment (PAD-Net §3.3): after partitioning, the dynamic
 * factors W_k are only needed where M = 1 and the static W_s only where M = 0, so each is stored
 * packed (its values at those positions; the positions are index buffers, not counted as
 * parameters) with λ folded in. Deployed parameters of a PAD layer: |W|·(1 + (K−1)·κ) +
 * attention/router.
 *
 * The compact layers never unpack their parameters:
 *  - conv: the static part runs as one plain convolution (its kernel scattered from the packed
 *    values once per batch) and the dynamic part on the packed values only: α·V gives each
 *    sample's nnz values (2·κ·K·|W| multiply-adds instead of 2·K·|W|) and a sparse per-sample
 *    convolution applies just those (src/engine/ops/sparse_per_sample_conv2d.ts: native with the
 *    addon, a scatter into dense per-sample kernels elsewhere). Inference only: a gradient throws;
 *  - MoE: the router and dispatchExperts (only the selected experts run; the static part once
 *    per token).
 * Both are built from their shape alone (the checkpoint of a deployed model fills them) or
 * from a masked layer (`from`). Outputs equal the masked layer's (tested to 1e-5).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from '../nn/module.js';
import type { Padding } from '../nn/conv2d.js';
import type { Activation } from '../nn/functional.js';
import { KernelAttention, temperatureOf, type ConvGeometry } from './dynamic_conv.js';
import { sparsePerSampleConv2d } from '../engine/ops/sparse_per_sample_conv2d.js';
import { Router, checkFullWidth, dispatchExperts, type ExpertLayer, type MoEOutput } from './moe.js';
import {
  PadConv2d,
  PadMoE,
  maskLayout,
  moeShape,
  padConvCost,
  padMoECost,
  scales,
  type MoEShape,
} from './partial.js';
import type { Cost } from '../sorted/cost.js';

/** Copies every parameter of `from` into the same-named parameter of `to` (same shapes). */
function copyParameters(from: Module, to: Module): void {
  to.loadStateDict(from.stateDict(['parameter']), { kinds: ['parameter'], where: 'copyParameters' });
}

const scalarScales = (layer: PadConv2d | PadMoE) =>
  tf.tidy(() => {
    const s = scales(layer.phi, layer.lambdaMode);
    return { lambdaD: s.lambdaD.dataSync()[0], lambdaS: s.lambdaS.dataSync()[0] };
  });

/** Scatter indices [n, 1] for tf.scatterND. */
const column = (positions: ArrayLike<number>) =>
  tf.tensor2d(Int32Array.from(positions), [positions.length, 1], 'int32');

/** The shape of a compact PAD conv: geometry, K, r, and where its mask put the elements. */
export interface CompactConvShape {
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
  padding: Padding;
  kernels: number;
  reduction: number;
  /** Dynamic elements (nnz). */
  dynamic: number;
  name: string;
}

/**
 * A deployed PAD conv. Parameters: the attention, `dynamicValues` [K, nnz] (λ_d folded),
 * `staticValues` [|W| − nnz] (λ_s folded); buffers: `dynamicIndex` and `staticIndex`, the flat
 * positions of those values in a [kh, kw, Cin, Cout] kernel.
 */
export class CompactPadConv2d extends Module {
  readonly attention: KernelAttention;
  readonly dynamicValues: tf.Variable;
  readonly staticValues: tf.Variable;
  readonly dynamicIndex: tf.Variable;
  readonly staticIndex: tf.Variable;
  readonly geometry: ConvGeometry;
  readonly kernelSize: number;
  /** The static kernel and the data of the packed values it was scattered from (staticKernel). */
  private cached: { source: object[]; kernel: tf.Tensor4D } | null = null;

  constructor(readonly shape: CompactConvShape) {
    super();
    const { inChannels: cin, outChannels: cout, kernel: k, kernels: K, dynamic } = shape;
    this.geometry = { kernel: k, stride: shape.stride, padding: shape.padding };
    this.kernelSize = k * k * cin * cout;
    if (!(Number.isInteger(dynamic) && dynamic >= 0 && dynamic <= this.kernelSize)) {
      throw new Error(`${shape.name}: ${dynamic} dynamic elements do not fit a kernel of ${this.kernelSize}`);
    }
    this.attention = this.addChild(
      'attention',
      new KernelAttention(cin, K, shape.reduction, () => 1, `${shape.name}.attention`),
    );
    this.dynamicValues = this.addParam('dynamicValues', tf.zeros([K, dynamic]), false);
    this.staticValues = this.addParam('staticValues', tf.zeros([this.kernelSize - dynamic]), false);
    this.dynamicIndex = this.addBuffer('dynamicIndex', tf.zeros([dynamic, 1], 'int32'));
    this.staticIndex = this.addBuffer('staticIndex', tf.zeros([this.kernelSize - dynamic, 1], 'int32'));
  }

  /** The compact form of a masked PAD conv (its current mask, λ folded). */
  static from(pad: PadConv2d): CompactPadConv2d {
    const d = pad.dynamic;
    const layout = maskLayout(pad.mask.dataSync());
    const compact = new CompactPadConv2d({
      inChannels: pad.inChannels,
      outChannels: pad.outChannels,
      kernel: pad.kernel,
      stride: d.geometry.stride,
      padding: d.geometry.padding,
      kernels: d.kernels,
      reduction: d.reduction,
      dynamic: layout.dynamic.length,
      name: pad.name,
    });
    compact.load(pad);
    return compact;
  }

  /** Fills this layer from a masked PAD conv with the same mask counts. */
  load(pad: PadConv2d): void {
    const layout = maskLayout(pad.mask.dataSync());
    if (layout.dynamic.length !== this.shape.dynamic) {
      throw new Error(
        `${this.shape.name}: the mask has ${layout.dynamic.length} dynamic elements, ` +
          `this compact layer was built for ${this.shape.dynamic}`,
      );
    }
    copyParameters(pad.dynamic.attention, this.attention);
    const { lambdaD, lambdaS } = scalarScales(pad);
    tf.tidy(() => {
      const flat = pad.dynamic.flatKernels(); // [K, |W|]
      const staticFlat = tf.reshape(pad.staticWeight, [this.kernelSize]);
      if (layout.dynamic.length)
        this.dynamicValues.assign(tf.mul(lambdaD, tf.gather(flat, Array.from(layout.dynamic), 1)));
      if (layout.static.length)
        this.staticValues.assign(tf.mul(lambdaS, tf.gather(staticFlat, Array.from(layout.static))));
      this.dynamicIndex.assign(column(layout.dynamic));
      this.staticIndex.assign(column(layout.static));
    });
  }

  /** Fraction of kernel elements that are dynamic. */
  get kappa(): number {
    return this.shape.dynamic / this.kernelSize;
  }

  /** x [B, H, W, Cin] → [B, H', W', Cout]; a compact layer serves its full width only. */
  forward(x: tf.Tensor4D, out: number, ctx: ForwardContext): tf.Tensor4D {
    const { inChannels: cin, outChannels: cout, dynamic } = this.shape;
    if (x.rank !== 4 || x.shape[3] !== cin || out !== cout) {
      throw new Error(
        `${this.shape.name}: a compact layer takes [B, H, W, ${cin}] → ${cout} channels, got ` +
          `[${x.shape.join(', ')}] → ${out}; extract the sub-model first, then compact it`,
      );
    }
    // The dynamic part stays packed: α·V gives each sample's nnz values, the op applies only those.
    const shared = this.staticKernel();
    const values = (
      dynamic > 0
        ? tf.matMul(this.attention.forward(x, temperatureOf(ctx)), this.dynamicValues) // [B, K] × [K, nnz]
        : tf.zeros([x.shape[0], 0])
    ) as tf.Tensor2D;
    const index = this.dynamicIndex as unknown as tf.Tensor2D;
    return sparsePerSampleConv2d(x, { values, index, shared, outChannels: cout }, this.geometry);
  }

  /**
   * λ_s (1 − M) ⊙ W_s as a [k, k, Cin, Cout] kernel (null when every element is dynamic), scattered
   * from the packed values once and kept while they stay the same tensors: a scatter of |W|
   * elements costs about as much as the layer's whole forward pass on wasm (8 ms for 64 → 64).
   */
  private staticKernel(): tf.Tensor4D | null {
    if (this.shape.dynamic === this.kernelSize) return null;
    const { inChannels: cin, outChannels: cout, kernel: k } = this.shape;
    const source = [this.staticValues.dataId, this.staticIndex.dataId];
    if (!this.cached || this.cached.source.some((id, i) => id !== source[i])) {
      this.cached?.kernel.dispose();
      const kernel = tf.tidy(() =>
        tf.reshape(tf.scatterND(this.staticIndex, this.staticValues, [this.kernelSize]), [k, k, cin, cout]),
      ) as tf.Tensor4D;
      this.cached = { source, kernel: tf.keep(kernel) };
    }
    return this.cached.kernel;
  }

  protected override disposeOwn(): void {
    this.cached?.kernel.dispose();
    this.cached = null;
  }

  cost(h: number, w: number): Cost {
    return padConvCost({ ...this.shape, geometry: this.geometry }, this.shape.dynamic, h, w);
  }
}

/** The shape of a compact PAD-MoE. */
export interface CompactMoEShape {
  experts: number;
  topK: number;
  inFeatures: number;
  outFeatures: number;
  /** Hidden width of FFN experts, null for linear experts. */
  hidden: number | null;
  activation: Activation;
  router: { noisyGating: boolean; capacityFactor?: number; auxWeight: number };
  /** Dynamic elements per expert layer. */
  dynamic: number[];
  name: string;
}

/**
 * A deployed PAD-MoE: the router, and per expert layer `${i}.dynamicValues` [E, nnz] (λ_d
 * folded), `${i}.staticValues` (λ_s folded), `${i}.bias` [E, out]; buffers `${i}.dynamicIndex`,
 * `${i}.staticIndex`. Expert weights are scattered from the packed values per forward (they do
 * not depend on the input); dispatchExperts runs only the selected experts.
 */
export class CompactPadMoE extends Module {
  readonly router: Router;
  readonly dynamicValues: tf.Variable[] = [];
  readonly staticValues: tf.Variable[] = [];
  readonly biases: tf.Variable[] = [];
  readonly dynamicIndex: tf.Variable[] = [];
  readonly staticIndex: tf.Variable[] = [];
  readonly layerShapes: { inFeatures: number; outFeatures: number }[];

  constructor(readonly shape: CompactMoEShape) {
    super();
    const E = shape.experts;
    this.router = this.addChild(
      'router',
      new Router(shape.inFeatures, E, shape.topK, { ...shape.router, name: `${shape.name}.router` }),
    );
    this.layerShapes =
      shape.hidden === null
        ? [{ inFeatures: shape.inFeatures, outFeatures: shape.outFeatures }]
        : [
            { inFeatures: shape.inFeatures, outFeatures: shape.hidden },
            { inFeatures: shape.hidden, outFeatures: shape.outFeatures },
          ];
    if (shape.dynamic.length !== this.layerShapes.length)
      throw new Error(
        `${shape.name}: ${shape.dynamic.length} dynamic counts for ${this.layerShapes.length} layers`,
      );
    this.layerShapes.forEach((l, i) => {
      const size = l.inFeatures * l.outFeatures;
      const nnz = shape.dynamic[i];
      this.dynamicValues.push(this.addParam(`${i}.dynamicValues`, tf.zeros([E, nnz]), false));
      this.staticValues.push(this.addParam(`${i}.staticValues`, tf.zeros([size - nnz]), false));
      this.biases.push(this.addParam(`${i}.bias`, tf.zeros([E, l.outFeatures]), false));
      this.dynamicIndex.push(this.addBuffer(`${i}.dynamicIndex`, tf.zeros([nnz, 1], 'int32')));
      this.staticIndex.push(this.addBuffer(`${i}.staticIndex`, tf.zeros([size - nnz, 1], 'int32')));
    });
  }

  static from(pad: PadMoE): CompactPadMoE {
    const moe = pad.moe;
    const compact = new CompactPadMoE({
      experts: moe.experts,
      topK: moe.topK,
      inFeatures: moe.inFeatures,
      outFeatures: moe.outFeatures,
      hidden: moe.hidden,
      activation: moe.activation,
      router: {
        noisyGating: moe.router.opts.noisyGating,
        capacityFactor: moe.router.opts.capacityFactor,
        auxWeight: moe.router.opts.auxWeight,
      },
      dynamic: pad.masks.map((m) => tf.tidy(() => tf.sum(m).dataSync()[0])),
      name: pad.name,
    });
    compact.load(pad);
    return compact;
  }

  load(pad: PadMoE): void {
    const moe = pad.moe;
    copyParameters(moe.router, this.router);
    const { lambdaD, lambdaS } = scalarScales(pad);
    const E = this.shape.experts;
    moe.layers.forEach((layer, i) => {
      const size = layer.inFeatures * layer.outFeatures;
      const layout = maskLayout(pad.masks[i].dataSync());
      if (layout.dynamic.length !== this.shape.dynamic[i])
        throw new Error(
          `${this.shape.name}: layer ${i} mask has ${layout.dynamic.length} dynamic elements, expected ${this.shape.dynamic[i]}`,
        );
      tf.tidy(() => {
        if (layout.dynamic.length)
          this.dynamicValues[i].assign(
            tf.mul(lambdaD, tf.gather(tf.reshape(layer.weight, [E, size]), Array.from(layout.dynamic), 1)),
          );
        if (layout.static.length)
          this.staticValues[i].assign(
            tf.mul(lambdaS, tf.gather(tf.reshape(pad.staticWeights[i], [size]), Array.from(layout.static))),
          );
        this.biases[i].assign(layer.bias);
        this.dynamicIndex[i].assign(column(layout.dynamic));
        this.staticIndex[i].assign(column(layout.static));
      });
    });
  }

  /** A block's FFN (BlockFfn): y at the experts' full width; the aux loss goes to ctx.aux. */
  forward(x: tf.Tensor, hidden: number, ctx: ForwardContext): tf.Tensor {
    checkFullWidth(this.shape.name, hidden, this.shape.hidden ?? this.shape.outFeatures);
    return this.routed(x, ctx).y;
  }

  /** y with the routing (see MoE.routed). */
  routed(x: tf.Tensor, ctx: ForwardContext): MoEOutput {
    const d = x.shape[x.rank - 1];
    if (x.rank < 2 || d !== this.shape.inFeatures) {
      throw new Error(
        `${this.shape.name}: input must be [..., ${this.shape.inFeatures}], got [${x.shape.join(', ')}]`,
      );
    }
    const E = this.shape.experts;
    const tokens = tf.reshape(x, [-1, d]) as tf.Tensor2D;
    const { gates, auxLoss, routerLogits } = this.router.forward(tokens, ctx);
    ctx.aux?.add(auxLoss);
    const experts: ExpertLayer[] = [];
    const shared: (tf.Tensor2D | null)[] = [];
    this.layerShapes.forEach((l, i) => {
      const size = l.inFeatures * l.outFeatures;
      const nnz = this.shape.dynamic[i];
      const dense = nnz
        ? tf.transpose(tf.scatterND(this.dynamicIndex[i], tf.transpose(this.dynamicValues[i]), [size, E]))
        : tf.zeros([E, size]);
      experts.push({
        weight: tf.reshape(dense, [E, l.outFeatures, l.inFeatures]) as tf.Tensor3D,
        bias: this.biases[i] as tf.Tensor2D,
      });
      shared.push(
        nnz < size
          ? (tf.reshape(tf.scatterND(this.staticIndex[i], this.staticValues[i], [size]), [
              l.outFeatures,
              l.inFeatures,
            ]) as tf.Tensor2D)
          : null,
      );
    });
    const y = dispatchExperts(tokens, gates, experts, this.shape.activation, shared);
    return {
      y: x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), this.shape.outFeatures]),
      auxLoss,
      routerLogits,
    };
  }

  cost(): Cost {
    const shape: MoEShape = {
      experts: this.shape.experts,
      topK: this.shape.topK,
      inFeatures: this.shape.inFeatures,
      routerParams: this.router.parameterCount(),
      layers: this.layerShapes,
    };
    return padMoECost(shape, this.shape.dynamic);
  }
}

export { moeShape };

/**
 * Moves the non-PAD state of a model into its deployed (or upcycled) copy: every parameter
 * `target` shares by name and shape, and the 'full' BatchNorm statistics (a compact model serves
 * its full width only). PAD layers and stacked experts are filled by their own `load`/`upcycle`.
 */
export function copyMatchingState(source: Module, target: Module): void {
  const own = target.stateDict(['parameter']);
  const fits = (name: string, t: tf.Tensor) => own.get(name)?.shape.join() === t.shape.join();
  const state = [...source.stateDict(['parameter', 'stats'])].filter(([n, t]) => !own.has(n) || fits(n, t));
  target.loadStateDict(new Map(state), {
    kinds: ['parameter', 'stats'],
    strict: false,
    subModel: { from: 'full', to: 'full' },
    where: 'copyMatchingState',
  });
}
