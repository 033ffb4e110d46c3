/**
 * The sparse per-sample convolution kernel (src/engine/ops/sparse_per_sample_conv2d.ts) through the addon:
 * out = base (the shared kernel's plain convolution, when given) + the indexed elements' shifted axpys.
 */
import { backend_util, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { floatKernelIO } from '../kernels/float_io.js';
import { SparsePerSampleConv2D } from '../kernels/sparse_per_sample_conv2d.js';
import { convGeometry } from './conv2d.js';
import type { NativeBlas } from './blas.js';

interface Attrs {
  kernel: number;
  stride: number;
  padding: 'same' | 'valid';
  outChannels: number;
}

export function nativeSparsePerSampleConv2d(blas: NativeBlas): KernelFunc {
  return (args) => {
    const { x, values, index, base } = args.inputs as Record<string, TensorInfo | undefined>;
    const { kernel, stride, padding, outChannels } = args.attrs as unknown as Attrs;
    if (!x || !values || !index || index.dtype !== 'int32')
      throw new Error(`${SparsePerSampleConv2D}: needs x, values (float32) and an int32 index`);
    const info = backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      [kernel, kernel, x.shape[3], outChannels],
      stride,
      1,
      padding,
    );
    const inputs = base ? [x, values, base] : [x, values];
    const { ins, outs, infos } = floatKernelIO(args.backend, SparsePerSampleConv2D, inputs, [info.outShape]);
    if (base) outs[0].set(ins[2]);
    else outs[0].fill(0);
    // Read after floatKernelIO allocated the output: allocation can grow the heap and detach views.
    const flat = (args.backend as BackendWasm).typedArrayFromHeap(index) as Int32Array;
    if (flat.length > 0) blas.sparsePerSampleConv2d(ins[0], ins[1], flat, outs[0], convGeometry(info));
    return infos[0];
  };
}
