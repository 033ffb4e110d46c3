/**
 * _FusedMatMul (matMul + bias + activation: tf.fused.matMul, dense layers) for the wasm backend: the
 * product on OpenBLAS, then bias and activation in one native pass over the output. A bias or PReLU slope
 * that is not one value per output column (or a single value) goes to the stock kernel.
 */
import type { _FusedMatMulAttrs, _FusedMatMulInputs, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { NativeActivation, type NativeActivationName, type NativeBlas } from './blas.js';
import { nativeCan, planMatMul, runMatMul, worthNative } from './mat_mul.js';

function isNativeActivation(name: string): name is NativeActivationName {
  return Object.hasOwn(NativeActivation, name);
}

/** A float32 vector over the output's columns ([..., N] with N values) or a single value. */
function perColumn(t: TensorInfo | undefined, N: number): boolean {
  if (t == null) return true;
  const size = t.shape.reduce((a, b) => a * b, 1);
  return t.dtype === 'float32' && (size === 1 || (size === N && t.shape[t.shape.length - 1] === N));
}

export function nativeFusedMatMul(blas: NativeBlas, stock: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights: prelu } = args.inputs as _FusedMatMulInputs;
    const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as unknown as _FusedMatMulAttrs;
    const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
    if (
      plan === null ||
      !isNativeActivation(activation) ||
      !perColumn(bias, plan.N) ||
      !perColumn(prelu, plan.N)
    )
      return stock(args);
    // tfjs-backend-wasm 4.22's kernel adds a bias correctly only to a single product without transposes
    // (elsewhere it is off by up to |bias| against the cpu backend, at every size), so the other biased
    // products take the native path whatever their size.
    const stockIsWrong = bias != null && (plan.batch > 1 || transposeA || transposeB);
    if (!(stockIsWrong ? nativeCan(a, b, plan) : worthNative(a, b, plan))) return stock(args);
    const backend = args.backend as BackendWasm;
    const out = runMatMul(blas, backend, a, b, plan, transposeA, transposeB);
    if (bias == null && activation === 'linear') return out;
    // Fresh views: runMatMul allocated the output, which may have grown (and detached) the heap.
    const view = (t: TensorInfo | undefined) =>
      t == null ? null : (backend.typedArrayFromHeap(t) as Float32Array);
    blas.biasActivation(
      view(out)!,
      plan.batch * plan.M,
      plan.N,
      view(bias),
      NativeActivation[activation],
      leakyreluAlpha ?? 0, // as the stock kernel reads a missing alpha
      view(prelu),
    );
    return out;
  };
}
