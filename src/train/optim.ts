/**
 * Optimizers over named parameters, with their state as named tensors (so a checkpoint can hold
 * it and `--resume` continues exactly). Weight decay is decoupled (AdamW, Loshchilov & Hutter);
 * for SGD it is the classic L2 term added to the gradient.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { positive, unitInterval } from '../schema/fields.js';

export const OptimizerConfigSchema = z
  .object({
    kind: z.enum(['sgd', 'adamw']),
    /** Peak learning rate (the schedule scales it). */
    lr: positive,
    /** SGD momentum (default 0.9). */
    momentum: z.number().min(0, 'must be ≥ 0').optional(),
    weightDecay: z.number().min(0, 'must be ≥ 0').optional(),
    beta1: unitInterval.optional(),
    beta2: unitInterval.optional(),
    epsilon: positive.optional(),
  })
  .strict();
export type OptimizerConfig = z.infer<typeof OptimizerConfigSchema>;

export class Optimizer {
  /** Named state tensors: `<param>.m`, `<param>.v` (AdamW) or `<param>.buf` (SGD). */
  readonly state = new Map<string, tf.Tensor>();
  step = 0;

  constructor(
    readonly config: OptimizerConfig,
    private readonly params: readonly [string, tf.Variable][],
  ) {
    if (!(config.lr > 0)) throw new Error(`optimizer: lr ${config.lr} must be > 0`);
  }

  /** One update with the given gradients (by parameter name) at learning rate `lr`. */
  apply(grads: Map<string, tf.Tensor>, lr: number): void {
    this.step++;
    const c = this.config;
    const wd = c.weightDecay ?? 0;
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g || !p.trainable) continue;
      const decays = wd > 0 && p.rank > 1; // no decay on biases and norm scales
      tf.tidy(() => {
        if (c.kind === 'sgd') {
          const mu = c.momentum ?? 0.9;
          const gd = decays ? tf.add(g, tf.mul(p, wd)) : g;
          const old = this.state.get(`${name}.buf`);
          const buf = old ? tf.add(tf.mul(old, mu), gd) : tf.clone(gd);
          this.setState(`${name}.buf`, buf);
          p.assign(tf.sub(p, tf.mul(buf, lr)));
        } else {
          const b1 = c.beta1 ?? 0.9;
          const b2 = c.beta2 ?? 0.999;
          const eps = c.epsilon ?? 1e-8;
          const m0 = this.state.get(`${name}.m`);
          const v0 = this.state.get(`${name}.v`);
          const m = m0 ? tf.add(tf.mul(m0, b1), tf.mul(g, 1 - b1)) : tf.mul(g, 1 - b1);
          const v = v0 ? tf.add(tf.mul(v0, b2), tf.mul(tf.square(g), 1 - b2)) : tf.mul(tf.square(g), 1 - b2);
          this.setState(`${name}.m`, m);
          this.setState(`${name}.v`, v);
          const mHat = tf.div(m, 1 - Math.pow(b1, this.step));
          const vHat = tf.div(v, 1 - Math.pow(b2, this.step));
          let next = tf.sub(p, tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), eps)), lr));
          if (decays) next = tf.sub(next, tf.mul(p, lr * wd));
          p.assign(next);
        }
      });
    }
  }

  private setState(key: string, t: tf.Tensor): void {
    this.state.get(key)?.dispose();
    this.state.set(key, tf.keep(t));
  }

  /** Replaces the state (from a checkpoint). */
  load(step: number, state: Map<string, tf.Tensor>): void {
    for (const t of this.state.values()) t.dispose();
    this.state.clear();
    for (const [k, t] of state) this.state.set(k, t);
    this.step = step;
  }
}

/** Cosine decay to 0 after a linear warm-up (Goyal et al. / SGDR without restarts). */
export function cosineLr(step: number, total: number, peak: number, warmup: number): number {
  if (step < warmup) return (peak * (step + 1)) / warmup;
  const t = (step - warmup) / Math.max(1, total - warmup);
  return 0.5 * peak * (1 + Math.cos(Math.PI * Math.min(1, t)));
}
