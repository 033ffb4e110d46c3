/** Parameter initialisers (named functions, as torch.nn.init). Seeded: same seed, same weights. */
import * as tf from '@tensorflow/tfjs-core';

/** He/Kaiming normal for ReLU nets: std = sqrt(2 / fanIn). */
export function kaimingNormal(shape: number[], fanIn: number, seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, Math.sqrt(2 / fanIn), 'float32', seed);
}

/** PyTorch's default for Linear/Conv: U(-1/sqrt(fanIn), 1/sqrt(fanIn)). */
export function uniformFanIn(shape: number[], fanIn: number, seed: number): tf.Tensor {
  const b = 1 / Math.sqrt(fanIn);
  return tf.randomUniform(shape, -b, b, 'float32', seed);
}

export function normal(shape: number[], std: number, seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, std, 'float32', seed);
}

/** A deterministic stream of integer seeds for the parameters of one model. */
export function seedStream(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32: cheap, deterministic, good enough to decorrelate per-tensor seeds.
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}
