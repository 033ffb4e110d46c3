import * as tf from '@tensorflow/tfjs-core';
import { Module } from './module.js';
import { normal } from './init.js';
import { checkUnits } from '../sorted/slice.js';

/** Token embedding [vocab, dim]; elastic: the first `dim'` features (Matryoshka-style prefix). */
export class Embedding extends Module {
  readonly weight: tf.Variable;
  constructor(
    readonly vocab: number,
    readonly dim: number,
    seed: () => number,
    readonly name = 'embedding',
  ) {
    super();
    this.weight = this.addParam('weight', normal([vocab, dim], 0.02, seed()));
  }

  /** ids: int32 [...] → [..., dim']. Gathers full rows then slices: costs B·T·dim, not vocab·dim'. */
  forward(ids: tf.Tensor, dimActive = this.dim): tf.Tensor {
    checkUnits(dimActive, this.dim, this.name, 'embedding dim');
    if (ids.dtype !== 'int32') throw new Error(`${this.name}: token ids must be int32, got ${ids.dtype}`);
    const rows = tf.gather(this.weight, ids);
    if (dimActive === this.dim) return rows;
    return tf.slice(
      rows,
      rows.shape.map(() => 0),
      [...ids.shape, dimActive],
    );
  }
}
