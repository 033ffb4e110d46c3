/**
 * Iterative Mode Partition (PAD-Net §3.2): choose the masks M of all PAD layers so that a fraction
 * κ of the elements stays dynamic, keeping the elements whose switch to static would change the
 * loss most. M is relaxed to real values so that
 *
 *   ∂L/∂M = (λ_d Σ_k α_k W_k − λ_s W_s) ⊙ ∂L/∂Ŵ     (summed over the calibration batches)
 *
 * is a first-order estimate of that change; autodiff computes it (the masks are variables).
 *
 *   all M := 1; model in eval mode
 *   for t in 1..T:  κ_t = κ^(t/T);  s = |g| / Σ|g| over all PAD layers;
 *                   M = 1 for the ⌊κ_t·n⌉ largest s (globally, or per layer), 0 elsewhere
 *
 * M is recomputed from scratch each round, so an element turned static may come back. Choosing
 * exactly the top ⌊κ_t·n⌉ is the threshold rule M = 1[s > τ] with ties broken by position, so the
 * kept count is exact even when many scores are equal (e.g. 0). 'random' is the paper's ablation:
 * the same counts, chosen uniformly at random.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRng } from '../data/random.js';
import type { ForwardContext, Module } from '../nn/module.js';
import { FULL, type SubModel } from '../sorted/submodel.js';
import { calibrateBatchNorm, type LabelledBatch } from '../nn/calibrate.js';
import { padLayers, setMask } from './partial.js';

export type { LabelledBatch };

/** What IMP needs of a model (every SortedModel is one): its PAD layers as modules, and logits. */
export interface PartitionModel extends Module {
  readonly family: string;
  forward(x: tf.Tensor, sub: SubModel, ctx: ForwardContext): tf.Tensor;
}

export interface PartitionOptions {
  /** κ in (0, 1]: the fraction of elements kept dynamic. Paper: 0.3 (DY-Conv), 0.5 (MoE). */
  kappa: number;
  /** T ≥ 1 rounds; 1 is one-shot. Default 1. */
  rounds?: number;
  /** Keep κ of ALL elements ('global', default; deployed size is then exact) or κ of each mask. */
  threshold?: 'global' | 'per-layer';
  /** 'imp' (default) or 'random' with the same counts (ablation). */
  method?: 'imp' | 'random';
  /** Seeds 'random'. Default 0. */
  seed?: number;
  /** BatchNorm statistics key; they are recalibrated on the batches each round. Default 'full'. */
  key?: string;
  /** DY-Conv attention temperature while scoring. Default 1. */
  temperature?: number;
}

export interface MaskPartition {
  /** `${layer}` or `${layer}.${index}` for layers with several masks. */
  name: string;
  size: number;
  /** Elements kept dynamic. */
  kept: number;
  fraction: number;
}

export interface PartitionResult {
  masks: MaskPartition[];
  kept: number;
  total: number;
  /** kept / total. */
  fraction: number;
  /** κ_t and the kept fraction after each round. */
  rounds: { round: number; kappa: number; fraction: number }[];
}

export function checkKappa(kappa: number, where = 'partition'): number {
  if (typeof kappa !== 'number' || !(kappa > 0 && kappa <= 1)) {
    throw new Error(`${where}: kappa ${kappa} must be in (0, 1] (the fraction of elements kept dynamic)`);
  }
  return kappa;
}

/** Every mask of every PAD layer with a readable name. */
function namedMasks(model: PartitionModel): { name: string; mask: tf.Variable }[] {
  return padLayers(model).flatMap((layer) =>
    layer.masks.map((mask, i) => ({
      name: layer.masks.length === 1 ? layer.name : `${layer.name}.${i}`,
      mask,
    })),
  );
}

/**
 * ∂L/∂M for every mask (in `namedMasks` order), summed over the batches; L is the mean
 * cross-entropy of each batch, computed in eval mode.
 */
export function maskGradients(
  model: PartitionModel,
  batches: readonly LabelledBatch[],
  ctx: ForwardContext,
): tf.Tensor[] {
  const masks = namedMasks(model).map((m) => m.mask);
  // The masks are frozen (non-trainable) parameters; tf.variableGrads only differentiates
  // trainable ones, so they are made trainable for the duration of the call.
  const wasTrainable = masks.map((m) => m.trainable);
  masks.forEach((m) => (m.trainable = true));
  try {
    let sums: tf.Tensor[] = masks.map((m) => tf.zerosLike(m));
    for (const batch of batches) {
      const next = tf.tidy(() => {
        const { grads } = tf.variableGrads(() => {
          const logits = model.forward(batch.x, FULL, ctx);
          const classes = logits.shape[1] as number;
          return tf.losses.softmaxCrossEntropy(tf.oneHot(batch.y, classes), logits) as tf.Scalar;
        }, masks);
        return masks.map((m, i) => tf.add(sums[i], grads[m.name]));
      });
      sums.forEach((s) => s.dispose());
      sums = next;
    }
    return sums;
  } finally {
    masks.forEach((m, i) => (m.trainable = wasTrainable[i]));
  }
}

/** Indices of the `n` largest scores, ties to the lower index. */
function topIndices(scores: Float32Array, n: number): Int32Array {
  const order = Int32Array.from({ length: scores.length }, (_, i) => i);
  order.sort((a, b) => scores[b] - scores[a] || a - b);
  return order.subarray(0, n);
}

/** Sets each mask to 1 on the chosen elements: global top-n over all masks, or top-n per mask. */
function choose(
  masks: tf.Variable[],
  scores: Float32Array[],
  kappa: number,
  threshold: 'global' | 'per-layer',
): void {
  const chosen = scores.map((s) => new Float32Array(s.length));
  if (threshold === 'global') {
    const all = new Float32Array(scores.reduce((a, s) => a + s.length, 0));
    const owner: { mask: number; offset: number }[] = [];
    let offset = 0;
    scores.forEach((s, i) => {
      all.set(s, offset);
      owner.push({ mask: i, offset });
      offset += s.length;
    });
    for (const flat of topIndices(all, Math.round(kappa * all.length))) {
      let m = owner.length - 1;
      while (owner[m].offset > flat) m--;
      chosen[m][flat - owner[m].offset] = 1;
    }
  } else {
    scores.forEach((s, i) => {
      for (const j of topIndices(s, Math.round(kappa * s.length))) chosen[i][j] = 1;
    });
  }
  masks.forEach((m, i) => setMask(m, chosen[i], m.name));
}

/**
 * Partitions every PAD layer of `model` into dynamic and static elements (sets the masks) and
 * returns the kept fraction per mask. `batches` are a few calibration mini-batches, re-used
 * every round.
 *
 * ```ts
 * const stats = partition(model, calibration, { kappa: 0.3, rounds: 3 });
 * console.log(stats.fraction); // 0.3 (global threshold)
 * ```
 */
export function partition(
  model: PartitionModel,
  batches: readonly LabelledBatch[],
  options: PartitionOptions,
): PartitionResult {
  const kappa = checkKappa(options.kappa);
  const rounds = options.rounds ?? 1;
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new Error(`partition: rounds ${rounds} must be a positive integer`);
  const threshold = options.threshold ?? 'global';
  const method = options.method ?? 'imp';
  const key = options.key ?? 'full';
  const named = namedMasks(model);
  if (named.length === 0)
    throw new Error(`partition: model '${model.family}' has no PAD layers (use conv 'pad' or ffn 'pad-moe')`);
  if (method === 'imp' && batches.length === 0)
    throw new Error('partition: IMP needs at least one calibration batch');
  const masks = named.map((m) => m.mask);
  const ctx: ForwardContext = { mode: 'eval', key, temperature: options.temperature };
  const inputs = batches.map((b) => b.x);

  const history: PartitionResult['rounds'] = [];
  if (method === 'random') {
    const rng = createRng(options.seed ?? 0);
    const scores = masks.map((m) => Float32Array.from({ length: m.size }, () => rng.next()));
    choose(masks, scores, kappa, threshold);
    history.push({ round: 1, kappa, fraction: keptFraction(masks) });
  } else {
    masks.forEach((m) => tf.tidy(() => m.assign(tf.onesLike(m))));
    for (let t = 1; t <= rounds; t++) {
      const kappaT = kappa ** (t / rounds);
      calibrateBatchNorm(model, FULL, key, inputs, { temperature: options.temperature });
      const grads = maskGradients(model, batches, ctx);
      const abs = grads.map((g) => tf.abs(g).dataSync() as Float32Array);
      grads.forEach((g) => g.dispose());
      // Normalised over all PAD layers: s = |g| / Σ|g| (ranks unchanged; per-layer mode compares within a mask).
      const total = abs.reduce((a, s) => a + s.reduce((x, y) => x + y, 0), 0) || 1;
      const scores = abs.map((s) => s.map((v) => v / total));
      choose(masks, scores, kappaT, threshold);
      history.push({ round: t, kappa: kappaT, fraction: keptFraction(masks) });
    }
  }
  if (inputs.length > 0) calibrateBatchNorm(model, FULL, key, inputs, { temperature: options.temperature });

  const stats = named.map(({ name, mask }) => {
    const kept = tf.tidy(() => tf.sum(mask).dataSync()[0]);
    return { name, size: mask.size, kept, fraction: kept / mask.size };
  });
  const kept = stats.reduce((a, s) => a + s.kept, 0);
  const total = stats.reduce((a, s) => a + s.size, 0);
  return { masks: stats, kept, total, fraction: kept / total, rounds: history };
}

function keptFraction(masks: tf.Variable[]): number {
  return tf.tidy(() => {
    const kept = masks.reduce((a, m) => a + tf.sum(m).dataSync()[0], 0);
    return kept / masks.reduce((a, m) => a + m.size, 0);
  });
}
