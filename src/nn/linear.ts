import * as tf from '@tensorflow/tfjs-core';
import { Module } from './module.js';
import { uniformFanIn } from './init.js';
import { checkUnits, prefix } from '../sorted/slice.js';
import { prefixMatMul } from '../engine/ops/prefix_mat_mul.js';

/**
 * y = x·Wᵀ + b with W stored [out, in] (row-major), so an output prefix is a contiguous block.
 * Elastic: `forward(x, out)` uses W[:out, :in] where `in` is read from x (the spec travels with
 * the data, as in Once-for-All's dynamic ops).
 */
export class Linear extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    seed: () => number,
    opts: { bias?: boolean; name?: string } = {},
  ) {
    super();
    this.name = opts.name ?? 'linear';
    this.weight = this.addParam('weight', uniformFanIn([outFeatures, inFeatures], inFeatures, seed()));
    this.bias =
      opts.bias === false ? null : this.addParam('bias', uniformFanIn([outFeatures], inFeatures, seed()));
  }
  readonly name: string;

  /** x: [..., in'] → [..., out'] with in' ≤ in read from x and out' = `out` (default all). */
  forward(x: tf.Tensor, out = this.outFeatures): tf.Tensor {
    const inActive = x.shape[x.shape.length - 1];
    checkUnits(inActive, this.inFeatures, this.name, 'input width');
    checkUnits(out, this.outFeatures, this.name, 'width');
    const x2 = (x.rank === 2 ? x : tf.reshape(x, [-1, inActive])) as tf.Tensor2D;
    let y: tf.Tensor = prefixMatMul(x2, this.weight as tf.Tensor2D, out, this.name);
    if (this.bias) y = tf.add(y, prefix(this.bias, [out], this.name));
    return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), out]);
  }

  static cost(inF: number, outF: number, bias = true): { params: number; flops: number } {
    return { params: inF * outF + (bias ? outF : 0), flops: 2 * inF * outF };
  }
}
