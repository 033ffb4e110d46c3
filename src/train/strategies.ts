/**
 * The training strategies (SortedNet §2 and its baselines), each as what it adds to the one
 * training loop: which sub-models a step trains (`planStep`), whether they share the step's
 * batch, and the loss of one micro-batch (`STRATEGY_LOSSES`). The loop (trainer.ts) does the
 * rest once for all of them: data, gradient accumulation, the guard, the update, checkpoints.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SortedModel } from '../models/model.js';
import type { Grid, GridEntry } from '../sorted/grid.js';
import type { SubModelSampler } from '../sorted/sample.js';
import { AuxLosses, subModelContext, type ForwardContext } from '../nn/module.js';
import type { Strategy, TrainConfig } from './config.js';

/** Which sub-models a step trains, and whether smaller ones distil from the largest. */
export function planStep(config: TrainConfig, grid: Grid, sampler: SubModelSampler): GridEntry[] {
  switch (config.strategy) {
    case 'sorted':
    case 'individual': // the caller passes a sampler that always draws the one sub-model
      return sampler.draw(config.gAcc);
    case 'full-only':
      return Array.from({ length: config.gAcc }, () => grid.largest);
    case 'sandwich': {
      const out = [grid.largest, grid.smallest];
      while (out.length < config.gAcc) out.push(sampler.drawOne());
      return out;
    }
    case 'all-exits':
      // One micro-batch per step entry; the loss averages every depth exit (see allExitsLoss).
      return Array.from({ length: config.gAcc }, () => grid.largest);
  }
}

/**
 * Whether every micro-batch of a step sees the step's one batch: asked for (`sameBatch`), or
 * needed because the teacher's soft targets are of that batch (distillation, sandwich).
 */
export function sharesBatch(config: TrainConfig): boolean {
  return config.sameBatch || config.distill || config.strategy === 'sandwich';
}

/** In-place distillation: the largest sub-model's softmax on the step's shared batch, detached. */
export interface Teacher {
  readonly id: string;
  readonly probs: tf.Tensor;
}

/**
 * The teacher's soft targets for the batch `input()` makes (inside this call's tidy). Its forward
 * draws from the step's `seed` (router noise, dropout) like any micro-batch; its auxiliary losses
 * go to a sink that trains nothing.
 */
export function teach(
  model: SortedModel,
  teacher: GridEntry,
  input: () => tf.Tensor,
  more: { seed: () => number; temperature?: number },
): Teacher {
  const ctx = subModelContext(teacher.sub, 'train', { ...more, aux: new AuxLosses() });
  return { id: teacher.id, probs: tf.tidy(() => tf.softmax(model.forward(input(), teacher.sub, ctx))) };
}

/** What the loss of one micro-batch sees. */
export interface LossInput {
  readonly model: SortedModel;
  /** The sub-model this micro-batch trains. */
  readonly entry: GridEntry;
  readonly x: tf.Tensor;
  /** Labels [B] (language models: [B·T], one per token). */
  readonly y: tf.Tensor1D;
  /** `subModelContext(entry.sub, 'train', …)`: the step's seed, temperature and aux sink. */
  readonly ctx: ForwardContext;
  readonly labelSmoothing: number;
  /** The grid's depths, ascending (all-exits trains each of them). */
  readonly depths: readonly number[];
  /** Present under in-place distillation. */
  readonly teacher?: Teacher;
}

/** The task loss of one micro-batch (auxiliary losses arrive through ctx.aux and are added by the loop). */
export type StrategyLoss = (input: LossInput) => tf.Scalar;

/** Mean cross-entropy; language-model logits [B, T, V] are scored per token against y [B·T]. */
export function crossEntropy(logits: tf.Tensor, y: tf.Tensor1D, smoothing: number): tf.Scalar {
  const classes = logits.shape[logits.rank - 1] as number;
  const flat = logits.rank === 2 ? logits : tf.reshape(logits, [-1, classes]);
  return tf.losses.softmaxCrossEntropy(tf.oneHot(y, classes), flat, undefined, smoothing) as tf.Scalar;
}

/**
 * The sub-model on the labels (sorted, individual, full-only). Under in-place distillation
 * (US-Nets), every sub-model but the teacher matches the teacher's soft targets instead.
 */
export const subModelLoss: StrategyLoss = ({ model, entry, x, y, ctx, labelSmoothing, teacher }) => {
  const logits = model.forward(x, entry.sub, ctx);
  return teacher && entry.id !== teacher.id
    ? (tf.losses.softmaxCrossEntropy(teacher.probs, logits) as tf.Scalar)
    : crossEntropy(logits, y, labelSmoothing);
};

/**
 * Sandwich (US-Nets): the largest and smallest sub-models plus random ones, all on the step's
 * one batch; with `distill`, all but the largest learn from its soft targets (subModelLoss).
 */
export const sandwichLoss: StrategyLoss = subModelLoss;

/**
 * The loss averaged over every depth exit through the shared head (Sorted Fine-Tuning): in one
 * pass through the blocks where the model can (`forwardExits`), else one forward per exit.
 */
export const allExitsLoss: StrategyLoss = (input) => {
  const { model, entry, x, y, ctx, labelSmoothing, depths } = input;
  if (depths.length <= 1) return subModelLoss(input);
  const exits = model.forwardExits
    ? model.forwardExits(x, entry.sub, depths, ctx)
    : depths.map((depth) => {
        const sub = { ...entry.sub, depth };
        return model.forward(x, sub, subModelContext(sub, ctx.mode, ctx));
      });
  const losses = exits.map((logits) => crossEntropy(logits, y, labelSmoothing));
  return tf.div(tf.addN(losses), losses.length) as tf.Scalar;
};

export const STRATEGY_LOSSES: Readonly<Record<Strategy, StrategyLoss>> = {
  sorted: subModelLoss,
  individual: subModelLoss,
  'full-only': subModelLoss,
  sandwich: sandwichLoss,
  'all-exits': allExitsLoss,
};
