import * as tf from '@tensorflow/tfjs-core';
import { Module } from './module.js';
import { Linear } from './linear.js';
import { activate, type Activation } from './functional.js';
import { addCost, zeroCost, type Cost } from '../sorted/cost.js';

/**
 * Position-wise feed-forward network. Elastic hidden width (MatFormer): W_up[:m, :], W_down[:, :m].
 * `swiglu` uses a gated unit: down(silu(gate(x)) ⊙ up(x)).
 */
export class FeedForward extends Module {
  readonly up: Linear;
  readonly down: Linear;
  readonly gate: Linear | null;
  constructor(
    readonly dim: number,
    readonly hidden: number,
    seed: () => number,
    readonly activation: Activation | 'swiglu' = 'gelu',
    name = 'ffn',
    bias = true,
  ) {
    super();
    this.up = this.addChild('up', new Linear(dim, hidden, seed, { name: `${name}.up`, bias }));
    this.gate =
      activation === 'swiglu'
        ? this.addChild('gate', new Linear(dim, hidden, seed, { name: `${name}.gate`, bias }))
        : null;
    this.down = this.addChild('down', new Linear(hidden, dim, seed, { name: `${name}.down`, bias }));
  }

  /** Parameters and FLOPs per token with `embed` model units and `hidden` hidden units. */
  cost(embed: number, hidden = this.hidden): Cost {
    const bias = this.up.bias !== null;
    const up = Linear.cost(embed, hidden, bias);
    return addCost(zeroCost(), up, this.gate ? up : zeroCost(), Linear.cost(hidden, embed, bias));
  }

  /** x: [..., e] → [..., e] through the first `hidden` units. */
  forward(x: tf.Tensor, hidden = this.hidden): tf.Tensor {
    const e = x.shape[x.rank - 1];
    const u = this.up.forward(x, hidden);
    const h = this.gate
      ? tf.mul(activate(this.gate.forward(x, hidden), 'silu'), u)
      : activate(u, this.activation as Activation);
    return this.down.forward(h, e);
  }
}
