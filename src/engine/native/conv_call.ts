/**
 * What the native convolution kernels (OpenBLAS and oneDNN) read from a Conv2D,
 * Conv2DBackpropInput or Conv2DBackpropFilter call before deciding whether to take it.
 */
import { backend_util, type Conv2DAttrs, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';

type Shape4 = [number, number, number, number];

/** Which Conv2D kernel: the forward pass, or the gradient for its input or for its filter. */
export type ConvDirection = 'forward' | 'input' | 'filter';

export interface ConvCall {
  /** The kernel's two tensors: x and filter (forward), dy and filter (input), x and dy (filter). */
  inputs: [TensorInfo, TensorInfo];
  /** The forward convolution's geometry (the gradients carry no dilation: 1). */
  info: backend_util.Conv2DInfo;
  /** The shape of what the kernel returns: y, dx or dW. */
  outShape: Shape4;
}

/** The call's tensors, geometry and output shape; null for NCHW, which the native kernels leave alone. */
export function conv2DCall(args: Parameters<KernelFunc>[0], direction: ConvDirection): ConvCall | null {
  const attrs = args.attrs as unknown as Conv2DAttrs & { inputShape?: Shape4; filterShape?: Shape4 };
  if (attrs.dataFormat !== 'NHWC') return null;
  const t = args.inputs as Record<string, TensorInfo>;
  const inputs: [TensorInfo, TensorInfo] =
    direction === 'forward' ? [t.x, t.filter] : direction === 'input' ? [t.dy, t.filter] : [t.x, t.dy];
  const info = backend_util.computeConv2DInfo(
    direction === 'input' ? attrs.inputShape! : (t.x.shape as Shape4),
    direction === 'filter' ? attrs.filterShape! : (t.filter.shape as Shape4),
    attrs.strides,
    direction === 'forward' ? attrs.dilations : 1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const outShape =
    direction === 'forward' ? info.outShape : direction === 'input' ? info.inShape : attrs.filterShape!;
  return { inputs, info, outShape };
}
