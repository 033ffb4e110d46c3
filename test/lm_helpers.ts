/** Small pieces the LM tests share: a tiny LLaMA-style config, full-sequence logits, their distance. */
import * as tf from '@tensorflow/tfjs-core';
import type { Transformer, TransformerConfig } from '../src/models/index.js';
import { evalContext } from '../src/nn/module.js';
import type { SubModel } from '../src/sorted/submodel.js';

/** Four layers of width 16, two heads: big enough for exits and caches, fast on any backend. */
export const tinyLlama = (vocab: number): TransformerConfig => ({
  task: 'lm',
  arch: 'llama',
  vocab,
  dim: 16,
  heads: 2,
  headDim: 8,
  ffn: 32,
  layers: 4,
  maxLen: 48,
});

/** The logits at every position of one sequence, [T][vocab], in eval mode. */
export const logitsOf = (model: Transformer, ids: number[], sub: SubModel = {}): number[][] =>
  tf.tidy(() => {
    const y = model.forward(tf.tensor2d([ids], [1, ids.length], 'int32'), sub, evalContext('lm-test'));
    return (y.arraySync() as number[][][])[0];
  });

/** The largest absolute difference between two [T][vocab] tables. */
export const maxDiff = (a: number[][], b: number[][]): number => {
  let m = 0;
  a.forEach((row, t) => row.forEach((v, i) => (m = Math.max(m, Math.abs(v - b[t][i])))));
  return m;
};
