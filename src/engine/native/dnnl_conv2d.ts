/**
 * Convolutions on oneDNN for the wasm backend (native/dnnl/dnnl.c): Conv2D and FusedConv2D (bias, ReLU and
 * ReLU6 fused), both their gradients, depthwise convolution and both its gradients. NHWC float32 only;
 * NCHW, other dtypes, other fused activations and tiny convolutions go to the kernel they wrap (OpenBLAS or
 * the portable one).
 */
import {
  backend_util,
  type DepthwiseConv2dNativeAttrs,
  type DepthwiseConv2dNativeBackpropFilterAttrs,
  type DepthwiseConv2dNativeBackpropInputAttrs,
  type FusedDepthwiseConv2DAttrs,
  type KernelFunc,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { floatKernelIO } from '../kernels/float_io.js';
import { conv2DCall, type ConvDirection } from './conv_call.js';
import { dnnlLimits } from '../kernels/prefix_conv2d.js';
import {
  DnnlActivation,
  DnnlPass,
  depthwiseStrides,
  dnnlGeometry,
  hwioStrides,
  type DnnlConv,
  type NativeDnnl,
} from './dnnl.js';

type Shape4 = [number, number, number, number];

export { dnnlLimits } from '../kernels/prefix_conv2d.js';

/** What native/dnnl/dnnl.c needs from tfjs's Conv2DInfo, the weight read through `weightStrides`. */
export function dnnlConv(
  info: backend_util.Conv2DInfo,
  groups: number,
  weightStrides: DnnlConv['weightStrides'],
): DnnlConv {
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    fH: info.filterHeight,
    fW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    dilationH: info.dilationHeight,
    dilationW: info.dilationWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
    padBottom: info.padInfo.bottom,
    padRight: info.padInfo.right,
    groups,
    weightStrides,
  };
}

/** Multiply-adds: output elements × (fH·fW·inC / groups). */
export function convMacs(c: DnnlConv): number {
  return c.batch * c.outH * c.outW * c.outC * ((c.fH * c.fW * c.inC) / c.groups);
}

function worth(tensors: TensorInfo[], c: DnnlConv): boolean {
  return tensors.every((t) => t.dtype === 'float32') && convMacs(c) >= dnnlLimits.minMacs;
}

/** A dense HWIO filter [fH, fW, inC, outC]. */
function plain(info: backend_util.Conv2DInfo): DnnlConv {
  return dnnlConv(info, 1, hwioStrides(info.filterWidth, info.inChannels, info.outChannels));
}

/** A dense depthwise filter [fH, fW, C, M]: C groups of one input and M outputs. */
function depthwise(info: backend_util.Conv2DInfo): DnnlConv {
  const multiplier = info.outChannels / info.inChannels;
  return dnnlConv(info, info.inChannels, depthwiseStrides(info.filterWidth, info.inChannels, multiplier));
}

/** Runs one pass into a fresh output of `shape`. */
export function runDnnl(
  dnnl: NativeDnnl,
  backend: unknown,
  kernel: string,
  pass: number,
  c: DnnlConv,
  inputs: TensorInfo[],
  shape: number[],
): TensorInfo {
  const { ins, outs, infos } = floatKernelIO(backend, kernel, inputs, [shape]);
  dnnl.conv(pass, dnnlGeometry(c), ins[0], ins[1], outs[0], ins[2] ?? null);
  return infos[0];
}

/** The oneDNN pass and kernel name of each direction. */
const DNNL_CONV = {
  forward: [DnnlPass.forward, 'Conv2D'],
  input: [DnnlPass.input, 'Conv2DBackpropInput'],
  filter: [DnnlPass.filter, 'Conv2DBackpropFilter'],
} as const;

/** Conv2D, or one of its gradients, on oneDNN; NCHW and convolutions too small to gain go `under`. */
function dnnlConvKernel(direction: ConvDirection) {
  const [pass, name] = DNNL_CONV[direction];
  return (dnnl: NativeDnnl, under: KernelFunc): KernelFunc =>
    (args) => {
      const call = conv2DCall(args, direction);
      const c = call && plain(call.info);
      if (!call || !c || !worth(call.inputs, c)) return under(args);
      return runDnnl(dnnl, args.backend, name, pass, c, call.inputs, call.outShape);
    };
}

export const dnnlConv2D = dnnlConvKernel('forward');

/** The per-channel bias of a fused convolution, or undefined; null when it is not per channel. */
function channelBias(bias: TensorInfo | undefined, channels: number): TensorInfo | undefined | null {
  if (!bias) return undefined;
  const size = bias.shape.reduce((a, b) => a * b, 1);
  return bias.dtype === 'float32' && size === channels ? bias : null;
}

/**
 * A forward convolution + per-channel bias + linear/ReLU/ReLU6 in one oneDNN primitive (FusedConv2D, and
 * FusedDepthwiseConv2D: inference's layers with their BatchNorm folded in, src/nn/conv_bn.ts); other
 * fusions and small convolutions go `under`. `geometry` reads the call's convolution and output shape.
 */
function dnnlFused(
  kernel: string,
  geometry: (x: TensorInfo, filter: TensorInfo, args: Parameters<KernelFunc>[0]) => [DnnlConv, number[]],
) {
  return (dnnl: NativeDnnl, under: KernelFunc): KernelFunc =>
    (args) => {
      const { x, filter, bias, preluActivationWeights } = args.inputs as Record<
        string,
        TensorInfo | undefined
      >;
      const attrs = args.attrs as unknown as { dataFormat: string; activation: string };
      if (!x || !filter || preluActivationWeights || attrs.dataFormat !== 'NHWC') return under(args);
      if (!Object.hasOwn(DnnlActivation, attrs.activation)) return under(args);
      const [c, outShape] = geometry(x, filter, args);
      const b = channelBias(bias, c.outC);
      if (b === null || !worth([x, filter], c)) return under(args);
      c.activation = DnnlActivation[attrs.activation as keyof typeof DnnlActivation];
      c.bias = b !== undefined;
      const inputs = b ? [x, filter, b] : [x, filter];
      return runDnnl(dnnl, args.backend, kernel, DnnlPass.forward, c, inputs, outShape);
    };
}

export const dnnlFusedConv2D = dnnlFused('FusedConv2D', (_x, _f, args) => {
  const { info } = conv2DCall(args, 'forward')!; // NHWC (checked), so there is a call
  return [plain(info), info.outShape];
});

export const dnnlFusedDepthwiseConv2D = dnnlFused('FusedDepthwiseConv2D', (x, filter, args) => {
  const attrs = args.attrs as unknown as FusedDepthwiseConv2DAttrs;
  const info = depthwiseInfo(x.shape, filter.shape, attrs, attrs.pad, attrs.dimRoundingMode);
  return [depthwise(info), info.outShape];
});

export const dnnlConv2DBackpropInput = dnnlConvKernel('input');

export const dnnlConv2DBackpropFilter = dnnlConvKernel('filter');

function depthwiseInfo(
  xShape: number[],
  filterShape: number[],
  attrs: { strides: [number, number] | number; dilations: [number, number] | number },
  pad: DepthwiseConv2dNativeAttrs['pad'],
  rounding: DepthwiseConv2dNativeAttrs['dimRoundingMode'],
): backend_util.Conv2DInfo {
  return backend_util.computeConv2DInfo(
    xShape as Shape4,
    filterShape as Shape4,
    attrs.strides,
    attrs.dilations,
    pad,
    rounding,
    true,
  );
}

export function dnnlDepthwiseConv2D(dnnl: NativeDnnl, under: KernelFunc): KernelFunc {
  return (args) => {
    const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs as unknown as DepthwiseConv2dNativeAttrs;
    if (attrs.dataFormat !== 'NHWC') return under(args);
    const info = depthwiseInfo(x.shape, filter.shape, attrs, attrs.pad, attrs.dimRoundingMode);
    const c = depthwise(info);
    if (!worth([x, filter], c)) return under(args);
    return runDnnl(
      dnnl,
      args.backend,
      'DepthwiseConv2dNative',
      DnnlPass.forward,
      c,
      [x, filter],
      info.outShape,
    );
  };
}

export function dnnlDepthwiseConv2DBackpropInput(dnnl: NativeDnnl, under: KernelFunc): KernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs as unknown as DepthwiseConv2dNativeBackpropInputAttrs;
    const info = depthwiseInfo(attrs.inputShape, filter.shape, attrs, attrs.pad, attrs.dimRoundingMode);
    const c = depthwise(info);
    if (!worth([dy, filter], c)) return under(args);
    return runDnnl(
      dnnl,
      args.backend,
      'DepthwiseConv2dNativeBackpropInput',
      DnnlPass.input,
      c,
      [dy, filter],
      info.inShape,
    );
  };
}

export function dnnlDepthwiseConv2DBackpropFilter(dnnl: NativeDnnl, under: KernelFunc): KernelFunc {
  return (args) => {
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    const attrs = args.attrs as unknown as DepthwiseConv2dNativeBackpropFilterAttrs;
    const info = depthwiseInfo(x.shape, attrs.filterShape, attrs, attrs.pad, attrs.dimRoundingMode);
    const c = depthwise(info);
    if (!worth([x, dy], c)) return under(args);
    return runDnnl(
      dnnl,
      args.backend,
      'DepthwiseConv2dNativeBackpropFilter',
      DnnlPass.filter,
      c,
      [x, dy],
      attrs.filterShape,
    );
  };
}
