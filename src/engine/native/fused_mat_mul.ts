/**
 * _FusedMatMul (matMul + bias + activation, what tf.fused.matMul and dense layers call) for the wasm
 * backend: the product on OpenBLAS, then bias and activation in one native pass over the output.
 * Activations other than linear/relu/relu6/leakyrelu, PReLU weights and biases that are not one value per
 * output column go to the stock kernel.
 */
import type { _FusedMatMulAttrs, _FusedMatMulInputs, KernelFunc } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { NativeActivation, type NativeActivationName, type NativeBlas } from './blas.js';
import { planMatMul, runMatMul, worthNative } from './mat_mul.js';

function isNativeActivation(name: string): name is NativeActivationName {
  return Object.hasOwn(NativeActivation, name);
}

export function nativeFusedMatMul(blas: NativeBlas, stock: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as _FusedMatMulInputs;
    const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as unknown as _FusedMatMulAttrs;
    const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
    const biasFits = bias == null || (bias.dtype === 'float32' && bias.shape.length === 1 && bias.shape[0] === plan?.N);
    if (!worthNative(a, b, plan) || !biasFits || preluActivationWeights != null || !isNativeActivation(activation))
      return stock(args);
    const backend = args.backend as BackendWasm;
    const out = runMatMul(blas, backend, a, b, plan, transposeA, transposeB);
    if (bias == null && activation === 'linear') return out;
    // Fresh views: runMatMul allocated the output, which may have grown (and detached) the heap.
    const outHeap = backend.typedArrayFromHeap(out) as Float32Array;
    const biasHeap = bias == null ? null : (backend.typedArrayFromHeap(bias) as Float32Array);
    blas.biasActivation(
      outHeap,
      plan.batch * plan.M,
      plan.N,
      biasHeap,
      NativeActivation[activation],
      leakyreluAlpha ?? 0, // as the stock kernel reads a missing alpha
    );
    return out;
  };
}
