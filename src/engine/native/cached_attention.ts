/**
 * The cached-attention kernel (src/engine/kernels/cached_attention.ts) in the addon: the same loops in C, cloned
 * for AVX-512 and AVX2, on the wasm tensors' heap memory. The JavaScript kernel is the twin it must equal.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO } from '../kernels/float_io.js';
import { CachedAttention, cachedAttentionCall } from '../kernels/cached_attention.js';
import type { NativeBlas } from './blas.js';

export function nativeCachedAttention(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { inputs, dims, masked } = cachedAttentionCall(args);
    const [B, h, , n, d] = dims;
    const { ins, outs, infos } = floatKernelIO(args.backend, CachedAttention, inputs, [[B, n, h, d]]);
    blas.attendCached(ins[0], ins[1], ins[2], ins[3], ins[4], masked ? ins[5] : null, outs[0], dims);
    return infos[0];
  };
}
