/**
 * 2-D convolution and both its gradients for the wasm backend as im2col + OpenBLAS GEMM, or direct AVX2 kernels
 * for narrow layers (native/blas.c):
 * Conv2D, FusedConv2D (bias + activation), Conv2DBackpropInput and Conv2DBackpropFilter. NHWC float32
 * only; NCHW, other dtypes and tiny convolutions go to the stock (or project) kernel.
 */
import { backend_util, type FusedConv2DAttrs, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { NativeActivation, type NativeBlas } from './blas.js';
import { conv2DCall, type ConvDirection } from './conv_call.js';

/**
 * Convolutions below this many multiply-adds stay on the stock kernels: XNNPACK's direct convolution is
 * quick on small images, and im2col plus a thread wake-up cost more than they save. Measured on 2 busy
 * cores: 1.2 M multiply-adds (8×8×8×16 → 16) 0.07 ms stock, 0.18 ms native; 302 M (64×16×16×32 → 64)
 * 33 ms stock, 15 ms native forward, 155 → 63 ms forward + filter gradient.
 */
export const MIN_CONV_MACS = 1 << 23;
/**
 * Forward convolutions with fewer inputs per output (fH·fW·inC) than this stay on XNNPACK: the GEMM is
 * too thin to win (64×32×32×3 → 32 with a 3×3 filter: 8.1 ms stock, 9.0 ms native).
 */
export const MIN_FORWARD_DEPTH = 64;

/** The addon's geometry vector, in native/blas.c's order. */
export function convGeometry(info: backend_util.Conv2DInfo): Int32Array {
  return Int32Array.from([
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outHeight,
    info.outWidth,
    info.outChannels,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.dilationHeight,
    info.dilationWidth,
    info.padInfo.top,
    info.padInfo.left,
  ]);
}

/** Multiply-adds of the convolution's GEMM: pixels × (fH·fW·inC) × outC. */
function macs(info: backend_util.Conv2DInfo): number {
  const pixels = info.batchSize * info.outHeight * info.outWidth;
  return pixels * info.filterHeight * info.filterWidth * info.inChannels * info.outChannels;
}

/**
 * Narrow convolutions that native/blas.c runs with its direct kernels pay no im2col and win from this many
 * multiply-adds up (node dist/bench/conv_direct.js); below it, two threads cost more than they save.
 */
export const MIN_DIRECT_MACS = 1 << 18;

type Pass = 'forward' | 'input' | 'filter';

/** Mirrors native/blas.c's choice of its direct kernels (conv_goes_direct and the pass conditions). */
function goesDirect(blas: NativeBlas, info: backend_util.Conv2DInfo, pass: Pass): boolean {
  const narrow = (out: number, inC: number) => out % 4 === 0 && out <= 48 && inC <= 64;
  const { inChannels: IC, outChannels: OC } = info;
  if (!blas.convDirect()) return false;
  if (pass === 'forward') return narrow(OC, IC);
  if (pass === 'input') return info.strideHeight === 1 && info.strideWidth === 1 && narrow(IC, OC);
  return IC >= 4 && narrow(OC, IC);
}

function worthNative(
  blas: NativeBlas,
  tensors: TensorInfo[],
  info: backend_util.Conv2DInfo,
  pass: Pass,
): boolean {
  if (!tensors.every((t) => t.dtype === 'float32')) return false;
  if (goesDirect(blas, info, pass)) return macs(info) >= MIN_DIRECT_MACS;
  const depth = info.filterHeight * info.filterWidth * info.inChannels;
  return macs(info) >= MIN_CONV_MACS && (pass !== 'forward' || depth >= MIN_FORWARD_DEPTH);
}

/** A float32 heap view; take it only after the kernel's output is allocated (growth detaches views). */
function heap(backend: BackendWasm, t: TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}

/** The addon function that computes each direction: y, dx or dW from the call's two tensors. */
const BLAS_CONV = {
  forward: 'conv2d',
  input: 'conv2dBackpropInput',
  filter: 'conv2dBackpropFilter',
} as const;

/** Conv2D, or one of its gradients, on OpenBLAS; NCHW and convolutions too small to gain go to `stock`. */
function nativeConvKernel(direction: ConvDirection) {
  return (blas: NativeBlas, stock: KernelFunc): KernelFunc =>
    (args) => {
      const call = conv2DCall(args, direction);
      if (!call || !worthNative(blas, call.inputs, call.info, direction)) return stock(args);
      const backend = args.backend as BackendWasm;
      const out = backend.makeOutput(call.outShape, 'float32');
      const [a, b] = call.inputs.map((t) => heap(backend, t));
      blas[BLAS_CONV[direction]](a, b, heap(backend, out), convGeometry(call.info));
      return out;
    };
}

export const nativeConv2D = nativeConvKernel('forward');

/** Conv2D + bias + activation; a bias or PReLU slope that is not per output channel goes to `stock`. */
export function nativeFusedConv2D(blas: NativeBlas, stock: KernelFunc): KernelFunc {
  return (args) => {
    const {
      x,
      filter,
      bias,
      preluActivationWeights: prelu,
    } = args.inputs as Record<string, TensorInfo | undefined>;
    const attrs = args.attrs as unknown as FusedConv2DAttrs;
    if (!x || !filter || attrs.dataFormat !== 'NHWC') return stock(args);
    const { info } = conv2DCall(args, 'forward')!; // NHWC, so there is a call
    const perChannel = (t: TensorInfo | undefined) => {
      const size = t?.shape.reduce((a, b) => a * b, 1);
      return t == null || (t.dtype === 'float32' && (size === 1 || size === info.outChannels));
    };
    if (
      !Object.hasOwn(NativeActivation, attrs.activation) ||
      !perChannel(bias) ||
      !perChannel(prelu) ||
      !worthNative(blas, [x, filter], info, 'forward')
    )
      return stock(args);
    const backend = args.backend as BackendWasm;
    const out = backend.makeOutput(info.outShape, 'float32');
    const outHeap = heap(backend, out);
    blas.conv2d(heap(backend, x), heap(backend, filter), outHeap, convGeometry(info));
    blas.biasActivation(
      outHeap,
      info.batchSize * info.outHeight * info.outWidth,
      info.outChannels,
      bias ? heap(backend, bias) : null,
      NativeActivation[attrs.activation as keyof typeof NativeActivation],
      attrs.leakyreluAlpha ?? 0,
      prelu ? heap(backend, prelu) : null,
    );
    return out;
  };
}

/** dx: the gradient of Conv2D with respect to its input. */
export const nativeConv2DBackpropInput = nativeConvKernel('input');

/** dW: the gradient of Conv2D with respect to its filter. */
export const nativeConv2DBackpropFilter = nativeConvKernel('filter');
