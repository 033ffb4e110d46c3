import * as tf from '@tensorflow/tfjs-core';
import { Module } from './module.js';
import { checkUnits, prefix } from '../sorted/slice.js';
import { layerNorm } from '../engine/ops/layer_norm.js';
import { rmsNorm } from '../engine/ops/rms_norm.js';

/** LayerNorm over the last axis; elastic: normalises over the ACTIVE features only (sorted embedding dim). */
export class LayerNorm extends Module {
  readonly gamma: tf.Variable;
  readonly beta: tf.Variable;
  constructor(
    readonly features: number,
    readonly name = 'ln',
    readonly epsilon = 1e-5,
  ) {
    super();
    this.gamma = this.addParam('weight', tf.ones([features]));
    this.beta = this.addParam('bias', tf.zeros([features]));
  }
  forward(x: tf.Tensor): tf.Tensor {
    const e = checkUnits(x.shape[x.rank - 1], this.features, this.name, 'features');
    const gamma = prefix(this.gamma, [e], this.name) as tf.Tensor1D;
    return layerNorm(x, gamma, prefix(this.beta, [e], this.name) as tf.Tensor1D, this.epsilon);
  }
}

/** RMSNorm (Zhang & Sennrich 2019): x / rms(x) · g, over the active features. */
export class RMSNorm extends Module {
  readonly gamma: tf.Variable;
  constructor(
    readonly features: number,
    readonly name = 'rmsnorm',
    readonly epsilon = 1e-6,
  ) {
    super();
    this.gamma = this.addParam('weight', tf.ones([features]));
  }
  forward(x: tf.Tensor): tf.Tensor {
    const e = checkUnits(x.shape[x.rank - 1], this.features, this.name, 'features');
    return rmsNorm(x, prefix(this.gamma, [e], this.name) as tf.Tensor1D, this.epsilon);
  }
}
