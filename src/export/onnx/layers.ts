/**
 * The project's layers as ONNX nodes (NCHW inside the graph). BatchNorm is folded into the conv
 * before it, with the extracted sub-model's own statistics:
 *   s = γ / √(var + ε),  W' = W · s (per output channel),  b' = β + (b − mean) · s.
 */
import * as tf from '@tensorflow/tfjs-core';
import { convOutSize, type Conv2d, type DepthwiseConv2d } from '../../nn/conv2d.js';
import type { BatchNorm2d } from '../../nn/batchnorm.js';
import type { Linear } from '../../nn/linear.js';
import { LayerNorm, type RMSNorm } from '../../nn/norm.js';
import type { Activation } from '../../nn/functional.js';
import { FULL, subModelId } from '../../sorted/submodel.js';
import type { OnnxGraph } from './graph.js';

const data = (t: tf.Tensor): Float32Array => t.dataSync() as Float32Array;

/** TF 'same' padding: the extra pixel goes at the end (bottom/right). [top, left, bottom, right]. */
export function samePads(size: number, kernel: number, stride: number): number[] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + kernel - size, 0);
  const begin = Math.floor(total / 2);
  return [begin, begin, total - begin, total - begin];
}

function bnScaleShift(bn: BatchNorm2d, where: string): { scale: Float32Array; shift: Float32Array } {
  const s = bn.statsFor(subModelId(FULL));
  if (!s) {
    throw new Error(
      `onnx: BatchNorm '${where}' has no statistics for this sub-model; run 'sortednet eval --run DIR' (it calibrates every sub-model of the grid) first`,
    );
  }
  const gamma = data(bn.gamma);
  const beta = data(bn.beta);
  const mean = data(s.mean);
  const variance = data(s.variance);
  const scale = gamma.map((g, c) => g / Math.sqrt(variance[c] + bn.epsilon));
  return { scale, shift: beta.map((b, c) => b - mean[c] * scale[c]) };
}

/**
 * conv (+ folded BN) on x [N, Cin, size, size]; returns the output and its spatial size.
 * Depthwise convs become Conv with group = channels.
 */
export function convBn(
  g: OnnxGraph,
  x: string,
  size: number,
  conv: Conv2d | DepthwiseConv2d,
  bn: BatchNorm2d | null,
): { y: string; size: number } {
  const depthwise = !('outChannels' in conv);
  const k = conv.kernel;
  // tfjs [kh, kw, in, out] (depthwise: [kh, kw, C, 1]) → ONNX [out, in/group, kh, kw].
  const w = tf.tidy(() => data(tf.transpose(conv.weight, depthwise ? [2, 3, 0, 1] : [3, 2, 0, 1])).slice());
  const cout = depthwise ? conv.channels : conv.outChannels;
  const cin = depthwise ? 1 : conv.inChannels;
  const bias = 'bias' in conv && conv.bias ? data(conv.bias) : new Float32Array(cout);
  let b = bias;
  if (bn) {
    const { scale, shift } = bnScaleShift(bn, bn.name);
    const per = cin * k * k;
    for (let o = 0; o < cout; o++) for (let i = 0; i < per; i++) w[o * per + i] *= scale[o];
    b = bias.map((v, o) => shift[o] + v * scale[o]);
  }
  const padding = conv.padding;
  const pads =
    typeof padding === 'number'
      ? [padding, padding, padding, padding]
      : padding === 'same'
        ? samePads(size, k, conv.stride)
        : [0, 0, 0, 0];
  const y = g.op(
    'Conv',
    [x, g.weight(`${conv.name}.weight`, w, [cout, cin, k, k]), g.weight(`${conv.name}.bias`, b, [cout])],
    { kernel_shape: [k, k], strides: [conv.stride, conv.stride], pads, group: depthwise ? cout : 1 },
    conv.name,
  );
  return { y, size: convOutSize(size, k, conv.stride, padding) };
}

/**
 * y = x·Wᵀ + b on [N, in] (Gemm) or on [..., in] (MatMul + Add). `inWidth` < in uses the first
 * columns of W, as the elastic Linear does when its input is narrower (a shared head).
 */
export function linear(
  g: OnnxGraph,
  x: string,
  layer: Linear,
  rank2 = true,
  inWidth = layer.inFeatures,
): string {
  const bias = layer.bias ? data(layer.bias) : new Float32Array(layer.outFeatures);
  const shape: [number, number] = [layer.outFeatures, inWidth];
  const w = tf.tidy(() => data(tf.slice(layer.weight, [0, 0], shape)).slice());
  if (rank2) {
    return g.op(
      'Gemm',
      [
        x,
        g.weight(`${layer.name}.weight`, w, shape),
        g.weight(`${layer.name}.bias`, bias, [layer.outFeatures]),
      ],
      { transB: 1 },
      layer.name,
    );
  }
  const wt = tf.tidy(() => data(tf.transpose(tf.tensor2d(w, shape))).slice());
  const y = g.op(
    'MatMul',
    [x, g.weight(`${layer.name}.weightT`, wt, [inWidth, layer.outFeatures])],
    {},
    layer.name,
  );
  return g.op('Add', [y, g.weight(`${layer.name}.bias`, bias, [layer.outFeatures])], {}, `${layer.name}.out`);
}

export function relu6(g: OnnxGraph, x: string): string {
  return g.op('Clip', [x, g.scalar('zero', 0), g.scalar('six', 6)], {}, 'relu6');
}

/** GELU, tanh form as the project computes it: x · σ(x · (2c·a·x² + 2c)), c = √(2/π), a = 0.044715. */
export function gelu(g: OnnxGraph, x: string): string {
  const c = Math.sqrt(2 / Math.PI);
  const x2 = g.op('Mul', [x, x], {}, 'gelu.x2');
  const t = g.op('Add', [
    g.op('Mul', [x2, g.scalar('gelu.ca2', 2 * c * 0.044715)]),
    g.scalar('gelu.c2', 2 * c),
  ]);
  return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, t])])], {}, 'gelu');
}

export function activation(g: OnnxGraph, x: string, act: Activation): string {
  switch (act) {
    case 'relu':
      return g.op('Relu', [x]);
    case 'relu6':
      return relu6(g, x);
    case 'gelu':
      return gelu(g, x);
    case 'silu':
      return g.op('Mul', [x, g.op('Sigmoid', [x])], {}, 'silu');
    case 'none':
      return x;
  }
}

export function layerNorm(g: OnnxGraph, x: string, ln: LayerNorm | RMSNorm): string {
  if (!(ln instanceof LayerNorm))
    throw new Error(`onnx: '${ln.name}' is an RMSNorm; only GPT-style (LayerNorm) transformers are exported`);
  return g.op(
    'LayerNormalization',
    [
      x,
      g.weight(`${ln.name}.weight`, data(ln.gamma), [ln.features]),
      g.weight(`${ln.name}.bias`, data(ln.beta), [ln.features]),
    ],
    { axis: -1, epsilon: ln.epsilon },
    ln.name,
  );
}

/** The identity shortcut between widths: slice or zero-pad channels (axis 1 in NCHW) to c. */
export function matchChannels(g: OnnxGraph, x: string, cin: number, c: number): string {
  if (cin === c) return x;
  if (cin > c) return g.op('Slice', [x, g.ints('starts', [0]), g.ints('ends', [c]), g.ints('axes', [1])]);
  return g.op('Pad', [x, g.ints('pads', [0, 0, 0, 0, 0, c - cin, 0, 0])]);
}

/** [N, C, H, W] → [N, C]. */
export function globalAvgPool(g: OnnxGraph, x: string): string {
  return g.op('Flatten', [g.op('GlobalAveragePool', [x])], { axis: 1 }, 'pooled');
}
