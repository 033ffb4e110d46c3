/**
 * The prefix convolution kernels (src/engine/ops/prefix_conv2d.ts) on oneDNN: the weight prefix
 * W[:, :, :in, :out] of an HWIO tensor is read in place through its strides, and the filter gradient is
 * written into the [fH, fW, in, out] corner of a full-shape gradient whose rest is zeroed. A bias prefix and
 * a ReLU/ReLU6 run inside the forward primitive; the bias gradient comes out of the filter pass.
 */
import { backend_util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import { floatKernelIO } from '../kernels/float_io.js';
import {
  PrefixConv2D,
  PrefixConv2DGradFilter,
  PrefixConv2DGradInput,
  type PrefixConv2DAttrs,
} from '../kernels/prefix_conv2d.js';
import { ActivationGrad, type FusedActivation } from '../kernels/activation.js';
import { AddRelu } from '../kernels/add_relu.js';
import { DnnlActivation, DnnlPass, dnnlGeometry, hwioStrides, type NativeDnnl } from './dnnl.js';
import { dnnlConv, runDnnl } from './dnnl_conv2d.js';

type Shape4 = [number, number, number, number];

/** The convolution of x [B, H, W, in] with the [fH, fW, in, out] prefix of a `full`-shaped weight. */
function prefixConv(xShape: number[], full: number[], out: number, attrs: PrefixConv2DAttrs) {
  const [fH, fW, IN, OUT] = full;
  const info = backend_util.computeConv2DInfo(
    xShape as Shape4,
    [fH, fW, xShape[3], out],
    attrs.strides,
    1,
    attrs.pad,
  );
  return { info, conv: dnnlConv(info, 1, hwioStrides(fW, IN, OUT)) };
}

export function dnnlPrefixConv2D(dnnl: NativeDnnl): KernelFunc {
  return (args) => {
    const { x, w, b } = args.inputs as { x: TensorInfo; w: TensorInfo; b?: TensorInfo };
    const attrs = args.attrs as unknown as PrefixConv2DAttrs & { out: number };
    const { info, conv } = prefixConv(x.shape, w.shape, attrs.out, attrs);
    conv.activation = DnnlActivation[attrs.activation ?? 'linear'];
    conv.bias = b !== undefined;
    const inputs = b ? [x, w, b] : [x, w];
    return runDnnl(dnnl, args.backend, PrefixConv2D, DnnlPass.forward, conv, inputs, info.outShape);
  };
}

export function dnnlPrefixConv2DGradInput(dnnl: NativeDnnl): KernelFunc {
  return (args) => {
    const { dy, w } = args.inputs as { dy: TensorInfo; w: TensorInfo };
    const attrs = args.attrs as unknown as PrefixConv2DAttrs & { inputShape: number[] };
    const { info, conv } = prefixConv(attrs.inputShape, w.shape, dy.shape[3], attrs);
    return runDnnl(dnnl, args.backend, PrefixConv2DGradInput, DnnlPass.input, conv, [dy, w], info.inShape);
  };
}

export function dnnlPrefixConv2DGradFilter(dnnl: NativeDnnl): KernelFunc {
  return (args) => {
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    const attrs = args.attrs as unknown as PrefixConv2DAttrs & { filterShape: number[] };
    const full = attrs.filterShape;
    const { conv } = prefixConv(x.shape, full, dy.shape[3], attrs);
    conv.bias = attrs.bias === true;
    const shapes = conv.bias ? [full, [full[3]]] : [full];
    const { ins, outs, infos } = floatKernelIO(args.backend, PrefixConv2DGradFilter, [x, dy], shapes);
    if (x.shape[3] < full[2] || dy.shape[3] < full[3]) for (const o of outs) o.fill(0);
    dnnl.conv(DnnlPass.filter, dnnlGeometry(conv), ins[0], ins[1], outs[0], outs[1] ?? null);
    return conv.bias ? infos : infos[0];
  };
}

export function dnnlAddRelu(dnnl: NativeDnnl): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { ins, outs, infos } = floatKernelIO(args.backend, AddRelu, [a, b], [a.shape]);
    dnnl.addRelu(ins[0], ins[1], outs[0]);
    return infos[0];
  };
}

export function dnnlActivationGrad(dnnl: NativeDnnl): KernelFunc {
  return (args) => {
    const { dy, y } = args.inputs as { dy: TensorInfo; y: TensorInfo };
    const { activation } = args.attrs as unknown as { activation: Exclude<FusedActivation, 'linear'> };
    const { ins, outs, infos } = floatKernelIO(args.backend, ActivationGrad, [dy, y], [dy.shape]);
    dnnl.activationGrad(DnnlActivation[activation], ins[0], ins[1], outs[0]);
    return infos[0];
  };
}
