/**
 * One training loop for every strategy (SortedNet §2): per optimizer step, draw the step's
 * sub-models, accumulate the gradients of their (1/gAcc-scaled) losses, apply one update.
 * Read it top to bottom: data, plan, losses, update, log, checkpoint.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SortedModel } from '../models/model.js';
import type { Grid, GridEntry } from '../sorted/grid.js';
import { SubModelSampler } from '../sorted/sample.js';
import type { ImageDataset } from '../data/dataset.js';
import { batches } from '../data/loader.js';
import { tokenBatches, type TokenDataset } from '../data/tokens.js';
import { createRng } from '../data/random.js';
import { Optimizer, cosineLr } from './optim.js';
import type { TrainConfig } from './config.js';
import { saveCheckpoint, loadCheckpoint, type SaveInput } from '../io/checkpoint.js';
import { Progress } from './progress.js';

export interface StepLog {
  step: number;
  loss: number;
  lr: number;
  subModels: string[];
  samplesPerSecond: number;
  elapsedSeconds: number;
}

export interface TrainOptions {
  /** Checkpoints go here (and log.jsonl); none when absent. */
  runDir?: string;
  /** Continue from the checkpoint in runDir. */
  resume?: boolean;
  datasetName?: string;
  onStep?: (log: StepLog) => void;
  progress?: boolean;
  /** Stop after this step (tests use it to simulate an interrupted run). */
  stopAfter?: number;
  /** Saved with every checkpoint (an LM's tokenizer.json and its name). */
  checkpointExtras?: Pick<SaveInput, 'preprocess' | 'extraFiles'>;
}

export interface TrainResult {
  steps: number;
  seconds: number;
  samples: number;
  finalLoss: number;
}

/** What the trainer learns from: an image classification set, or token windows for a language model. */
export type TrainData = ImageDataset | TokenDataset;

interface AnyBatch {
  x: Float32Array | Int32Array;
  y: Int32Array;
  size: number;
}

const isTokens = (d: TrainData): d is TokenDataset => 'tokens' in d;

/** An endless, deterministic stream of batches: epoch e is shuffled with seed + e. */
class BatchStream {
  private epoch = 0;
  private it: Iterator<AnyBatch>;
  constructor(
    private readonly ds: TrainData,
    private readonly batchSize: number,
    private readonly seed: number,
    private readonly augment: TrainConfig['augment'],
  ) {
    if (ds.n < batchSize)
      throw new Error(`batch size ${batchSize} is larger than the dataset (${ds.n} samples)`);
    this.it = this.open();
  }
  private open(): Iterator<AnyBatch> {
    const o = {
      batchSize: this.batchSize,
      shuffle: true,
      dropLast: true,
      seed: this.seed * 1000003 + this.epoch,
    };
    if (isTokens(this.ds)) return tokenBatches(this.ds, o);
    return batches(this.ds, {
      ...o,
      augment: { cropPadding: this.augment.cropPadding, horizontalFlip: this.augment.flip },
    });
  }
  next(): AnyBatch {
    let r = this.it.next();
    if (r.done) {
      this.epoch++;
      this.it = this.open();
      r = this.it.next();
    }
    return r.value as AnyBatch;
  }
}

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
      // One micro-batch per step entry; the loss averages every depth exit (see exitLoss).
      return Array.from({ length: config.gAcc }, () => grid.largest);
  }
}

function toTensors(model: SortedModel, b: AnyBatch, ds: TrainData): { x: tf.Tensor; y: tf.Tensor1D } {
  if (isTokens(ds)) {
    if (model.input !== 'tokens')
      throw new Error(`a ${model.family} model cannot learn from token data ${ds.name}`);
    return { x: tf.tensor2d(b.x, [b.size, ds.seqLen], 'int32'), y: tf.tensor1d(b.y, 'int32') };
  }
  if (model.input !== 'image')
    throw new Error(`a ${model.family} model cannot learn from image data ${ds.name}`);
  return { x: tf.tensor4d(b.x, [b.size, ds.height, ds.width, ds.channels]), y: tf.tensor1d(b.y, 'int32') };
}

/** Mean cross-entropy; language-model logits [B, T, V] are scored per token against y [B·T]. */
function crossEntropy(logits: tf.Tensor, y: tf.Tensor1D, classes: number, smoothing: number): tf.Scalar {
  const flat = logits.rank === 2 ? logits : tf.reshape(logits, [-1, classes]);
  return tf.losses.softmaxCrossEntropy(tf.oneHot(y, classes), flat, undefined, smoothing) as tf.Scalar;
}

export async function train(
  model: SortedModel,
  grid: Grid,
  data: TrainData,
  config: TrainConfig,
  options: TrainOptions = {},
): Promise<TrainResult> {
  const params = model.namedParameters();
  const nameOf = new Map(params.map(([n, v]) => [v.name, n]));
  const optimizer = new Optimizer(config.optimizer, params);
  let startStep = 0;
  if (options.resume) {
    if (!options.runDir) throw new Error('resume needs a run folder');
    const ck = await loadCheckpoint(options.runDir, model, { calibrated: false });
    optimizer.load(ck.meta.step, ck.optimizerState);
    startStep = ck.meta.step;
  }
  // Every random choice derives from (seed, step): a resumed run replays the same draws.
  const stream = new BatchStream(data, config.batchSize, config.seed, config.augment);
  const batchesPerStep =
    config.sameBatch || config.distill || config.strategy === 'sandwich' ? 1 : config.gAcc;
  for (let i = 0; i < startStep * batchesPerStep; i++) stream.next();
  const depths = [
    ...new Set(grid.entries.map((e) => e.sub.depth).filter((d) => d !== undefined)),
  ] as number[];

  const progress = options.progress ? new Progress(config.steps) : null;
  const t0 = performance.now();
  let samples = 0;
  let lastLoss = NaN;
  const end = Math.min(config.steps, options.stopAfter ?? config.steps);
  for (let step = startStep; step < end; step++) {
    const stepRng = createRng(config.seed * 7919 + step);
    const sampler = new SubModelSampler(grid, config.sampler, () => stepRng.next());
    const entries = planStep(config, grid, sampler);
    const lr = cosineLr(step, config.steps, config.optimizer.lr, config.warmupSteps);
    const accum = new Map<string, tf.Tensor>();
    let stepLoss = 0;
    let shared: AnyBatch | null = null;
    let softTargets: tf.Tensor | null = null;
    if (config.distill) {
      // Soft targets of the largest sub-model on the step's shared batch, detached (no gradient).
      shared = stream.next();
      const b = shared;
      softTargets = tf.tidy(() =>
        tf.softmax(
          model.forward(toTensors(model, b, data).x, grid.largest.sub, {
            mode: 'train',
            key: grid.largest.id,
          }),
        ),
      );
    }
    for (const entry of entries) {
      const b =
        config.sameBatch || config.distill || config.strategy === 'sandwich'
          ? (shared ??= stream.next())
          : stream.next();
      samples += b.size;
      const weight = (config.lossWeights?.[entry.id] ?? 1) / entries.length;
      const ctx = { mode: 'train' as const, key: entry.id, seed: () => stepRng.int(2 ** 31) };
      const { value, grads } = tf.tidy(() => {
        const { x, y } = toTensors(model, b, data);
        return tf.variableGrads(() => {
          let loss: tf.Scalar;
          if (config.strategy === 'all-exits' && depths.length > 1) {
            // Loss averaged over every depth exit through the shared head (Sorted Fine-Tuning).
            const losses = depths.map((d) => {
              const logits = model.forward(
                x,
                { ...entry.sub, depth: d },
                { ...ctx, key: `${entry.id}@${d}` },
              );
              return crossEntropy(logits, y, logits.shape[logits.rank - 1] as number, config.labelSmoothing);
            });
            loss = tf.div(tf.addN(losses), losses.length) as tf.Scalar;
          } else {
            const logits = model.forward(x, entry.sub, ctx);
            loss =
              softTargets && entry.id !== grid.largest.id
                ? // In-place distillation (US-Nets): smaller sub-models match the largest's soft targets.
                  (tf.losses.softmaxCrossEntropy(softTargets, logits) as tf.Scalar)
                : crossEntropy(logits, y, logits.shape[logits.rank - 1] as number, config.labelSmoothing);
          }
          return tf.mul(loss, weight) as tf.Scalar;
        }, model.trainableVariables());
      });
      stepLoss += (await value.data())[0];
      value.dispose();
      for (const [vname, g] of Object.entries(grads)) {
        const n = nameOf.get(vname)!;
        const old = accum.get(n);
        if (old) {
          accum.set(
            n,
            tf.tidy(() => tf.add(old, g)),
          );
          old.dispose();
          g.dispose();
        } else accum.set(n, g);
      }
    }
    optimizer.apply(accum, lr);
    for (const g of accum.values()) g.dispose();
    (softTargets as tf.Tensor | null)?.dispose();
    lastLoss = stepLoss;
    const elapsed = (performance.now() - t0) / 1000;
    const log: StepLog = {
      step: step + 1,
      loss: stepLoss,
      lr,
      subModels: entries.map((e) => e.id),
      samplesPerSecond: samples / elapsed,
      elapsedSeconds: elapsed,
    };
    options.onStep?.(log);
    progress?.update(step + 1 - startStep, end - startStep, stepLoss, samples / elapsed);
    const last = step + 1 === config.steps;
    if (
      options.runDir &&
      (last || (config.checkpointEvery > 0 && (step + 1) % config.checkpointEvery === 0))
    ) {
      saveCheckpoint(options.runDir, {
        model,
        grid: grid.spec,
        step: step + 1,
        seed: config.seed,
        train: config,
        dataset: options.datasetName,
        optimizerState: optimizer.state,
        ...options.checkpointExtras,
      });
    }
  }
  progress?.done();
  return { steps: end - startStep, seconds: (performance.now() - t0) / 1000, samples, finalLoss: lastLoss };
}
