/**
 * One training loop for every strategy (SortedNet §2): per optimizer step, draw the step's
 * sub-models, accumulate the gradients of their (1/gAcc-scaled) losses, apply one update.
 * Read it top to bottom: data, plan, losses, guard, update, log, checkpoint. What differs between
 * the strategies (the plan, the shared batch, the loss) lives in strategies.ts.
 *
 * The loop owns no files. It starts from a `TrainState` (a resumed run's) and hands its state
 * to `onCheckpoint` every `checkpointEvery` steps; the caller saves it (`trainRun` in
 * src/run/ does so crash-safely in a run folder). A non-finite loss or gradient stops it (or
 * skips the step) before the weights are touched, and non-finite weights are never handed out.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SortedModel } from '../models/model.js';
import type { Grid } from '../sorted/grid.js';
import { SubModelSampler } from '../sorted/sample.js';
import type { ImageDataset } from '../data/dataset.js';
import { batches } from '../data/loader.js';
import { tokenBatches, type TokenDataset } from '../data/tokens.js';
import { isSequenceDataset, sequenceBatches, type SequenceDataset } from '../data/sequences.js';
import { createRng, streamSeed } from '../data/random.js';
import { Optimizer, cosineLr } from './optim.js';
import type { TrainConfig } from './config.js';
import { Progress } from './progress.js';
import { temperatureAt } from './temperature.js';
import { AuxLosses, subModelContext } from '../nn/module.js';
import { STRATEGY_LOSSES, planStep, sharesBatch, teach, type Teacher } from './strategies.js';

export interface StepLog {
  step: number;
  loss: number;
  /** L2 norm of the step's accumulated gradient (all parameters). */
  gradNorm: number;
  /** The update was skipped: non-finite loss or gradient with `nonFinite: 'skip'`. */
  skipped?: boolean;
  lr: number;
  subModels: string[];
  samplesPerSecond: number;
  elapsedSeconds: number;
}

/**
 * Where a run stands after `step` optimizer steps: with the model's weights, all a later run
 * needs to continue exactly (the data order and sub-model draws derive from the seed and step).
 */
export interface TrainState {
  step: number;
  /** The optimizer's own step count (bias correction); equals `step` unless steps were skipped. */
  optimizerStep: number;
  /** Moments / momentum per parameter: `<parameter>.m`, `.v` (AdamW) or `.buf` (SGD). */
  optimizerState: Map<string, tf.Tensor>;
}

export interface TrainOptions {
  /** Continue from this state (the model holds the weights of the same step). */
  start?: TrainState;
  /**
   * Called with the current state every `checkpointEvery` steps and after the last step, once
   * the weights are checked finite. The tensors are the trainer's: read them, don't keep them.
   */
  onCheckpoint?: (state: TrainState) => void;
  onStep?: (log: StepLog) => void;
  progress?: boolean;
  /** Stop after this step (tests use it to simulate an interrupted run). */
  stopAfter?: number;
}

/** Training stopped because the loss, the gradient or the weights stopped being finite. */
export class DivergenceError extends Error {
  override readonly name = 'DivergenceError';
}

/** Consecutive skipped steps after which `nonFinite: 'skip'` gives up: the run is not recovering. */
export const MAX_CONSECUTIVE_SKIPS = 10;

export interface TrainResult {
  /** Steps run by this call (from the start state's step). */
  steps: number;
  seconds: number;
  samples: number;
  finalLoss: number;
  /** The state after the last step run. */
  state: TrainState;
}

/** What the trainer learns from: images or token sequences with a class each, or token windows for a language model. */
export type TrainData = ImageDataset | TokenDataset | SequenceDataset;

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
      seed: streamSeed(this.seed, 1000003, this.epoch),
    };
    if (isSequenceDataset(this.ds)) return sequenceBatches(this.ds, o);
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

export { planStep } from './strategies.js';

function toTensors(model: SortedModel, b: AnyBatch, ds: TrainData): { x: tf.Tensor; y: tf.Tensor1D } {
  if (isSequenceDataset(ds)) {
    if (model.input !== 'tokens')
      throw new Error(`a ${model.family} model cannot learn from token sequences ${ds.name}`);
    return { x: tf.tensor2d(b.x, [b.size, ds.seqLen], 'int32'), y: tf.tensor1d(b.y, 'int32') };
  }
  if (isTokens(ds)) {
    if (model.input !== 'tokens')
      throw new Error(`a ${model.family} model cannot learn from token data ${ds.name}`);
    return { x: tf.tensor2d(b.x, [b.size, ds.seqLen], 'int32'), y: tf.tensor1d(b.y, 'int32') };
  }
  if (model.input !== 'image')
    throw new Error(`a ${model.family} model cannot learn from image data ${ds.name}`);
  return { x: tf.tensor4d(b.x, [b.size, ds.height, ds.width, ds.channels]), y: tf.tensor1d(b.y, 'int32') };
}

export async function train(
  model: SortedModel,
  grid: Grid,
  data: TrainData,
  config: TrainConfig,
  options: TrainOptions = {},
): Promise<TrainResult> {
  checkTrainData(data);
  const optimizer = new Optimizer(config.optimizer, model.namedParameters());
  const { start } = options;
  if (start) {
    if (start.step > config.steps) {
      throw new Error(
        `the run is at step ${start.step}, beyond the ${config.steps} steps asked for; give more steps`,
      );
    }
    optimizer.load(start.optimizerStep, start.optimizerState);
  }
  return trainSteps(model, grid, data, config, options, optimizer, start?.step ?? 0);
}

/** The loop itself, from `startStep` (the optimizer holds the state of the steps before it). */
async function trainSteps(
  model: SortedModel,
  grid: Grid,
  data: TrainData,
  config: TrainConfig,
  options: TrainOptions,
  optimizer: Optimizer,
  startStep: number,
): Promise<TrainResult> {
  const nameOf = new Map(model.namedParameters().map(([n, v]) => [v.name, n]));
  // Every random choice derives from (seed, step): a resumed run replays the same draws.
  const stream = new BatchStream(data, config.batchSize, config.seed, config.augment);
  const shareBatch = sharesBatch(config);
  const batchesPerStep = shareBatch ? 1 : config.gAcc;
  for (let i = 0; i < startStep * batchesPerStep; i++) stream.next();
  const depths = (
    [...new Set(grid.entries.map((e) => e.sub.depth).filter((d) => d !== undefined))] as number[]
  ).sort((a, b) => a - b);
  const lossOf = STRATEGY_LOSSES[config.strategy];

  const progress = options.progress ? new Progress(config.steps) : null;
  const t0 = performance.now();
  let samples = 0;
  let lastLoss = NaN;
  let skippedInARow = 0;
  const end = Math.min(config.steps, options.stopAfter ?? config.steps);
  for (let step = startStep; step < end; step++) {
    const stepRng = createRng(streamSeed(config.seed, 7919, step));
    const seed = () => stepRng.int(2 ** 31); // router noise, dropout
    const sampler = new SubModelSampler(grid, config.sampler, () => stepRng.next());
    const entries = planStep(config, grid, sampler);
    const lr = cosineLr(step, config.steps, config.optimizer.lr, config.warmupSteps);
    const temperature = config.temperature && temperatureAt(config.temperature, step);
    let shared: AnyBatch | null = null;
    let teacher: Teacher | undefined;
    if (config.distill) {
      shared = stream.next();
      const b = shared;
      teacher = teach(model, grid.largest, () => toTensors(model, b, data).x, { seed, temperature });
    }
    const accum = new GradientSum(nameOf);
    let stepLoss = 0;
    for (const entry of entries) {
      const b = shareBatch ? (shared ??= stream.next()) : stream.next();
      samples += b.size;
      const weight = (config.lossWeights?.[entry.id] ?? 1) / entries.length;
      // Auxiliary losses (MoE load balancing) arrive through ctx.aux and join the task loss.
      const aux = new AuxLosses();
      const ctx = subModelContext(entry.sub, 'train', { seed, temperature, aux });
      const { value, grads } = tf.tidy(() => {
        const { x, y } = toTensors(model, b, data);
        const input = { model, entry, x, y, ctx, labelSmoothing: config.labelSmoothing, depths, teacher };
        return tf.variableGrads(
          () => tf.mul(tf.add(lossOf(input), aux.total()), weight) as tf.Scalar,
          model.trainableVariables(),
        );
      });
      stepLoss += (await value.data())[0];
      value.dispose();
      accum.add(grads);
    }
    // The guard: a non-finite loss or gradient never reaches the weights (nor, so, a checkpoint).
    const gradNorm = accum.norm();
    const finite = Number.isFinite(stepLoss) && Number.isFinite(gradNorm);
    if (finite) {
      optimizer.apply(accum.grads, lr);
      skippedInARow = 0;
    } else skippedInARow++;
    accum.dispose();
    teacher?.probs.dispose();
    if (!finite && (config.nonFinite === 'stop' || skippedInARow > MAX_CONSECUTIVE_SKIPS))
      throw diverged(step, stepLoss, gradNorm, skippedInARow, config);
    if (finite) lastLoss = stepLoss;
    const elapsed = (performance.now() - t0) / 1000;
    const log: StepLog = {
      step: step + 1,
      loss: stepLoss,
      gradNorm,
      ...(finite ? {} : { skipped: true }),
      lr,
      subModels: entries.map((e) => e.id),
      samplesPerSecond: samples / elapsed,
      elapsedSeconds: elapsed,
    };
    if (!finite)
      console.warn(`step ${step + 1}: loss ${stepLoss}, gradient norm ${gradNorm}; update skipped`);
    options.onStep?.(log);
    progress?.update(step + 1 - startStep, end - startStep, stepLoss, samples / elapsed);
    if (options.onCheckpoint && checkpointDue(step + 1, config)) {
      if (!allFinite(model)) {
        throw new DivergenceError(
          `step ${step + 1}: the weights are no longer finite; not saving them. ` +
            `Lower the learning rate (now ${config.optimizer.lr}).`,
        );
      }
      options.onCheckpoint({
        step: step + 1,
        optimizerStep: optimizer.step,
        optimizerState: optimizer.state,
      });
    }
  }
  progress?.done();
  return {
    steps: end - startStep,
    seconds: (performance.now() - t0) / 1000,
    samples,
    finalLoss: lastLoss,
    state: { step: end, optimizerStep: optimizer.step, optimizerState: optimizer.state },
  };
}

/** The guard's error for step `step` (0-based), whose loss or gradient is not finite. */
function diverged(
  step: number,
  loss: number,
  gradNorm: number,
  skippedInARow: number,
  config: TrainConfig,
): DivergenceError {
  return new DivergenceError(
    `step ${step + 1}: the loss is ${loss} and the gradient norm ${gradNorm}` +
      (skippedInARow > 1 ? ` (${skippedInARow} such steps in a row)` : '') +
      `; training stopped without applying the update. ` +
      `Lower the learning rate (now ${config.optimizer.lr}) or check the data` +
      (config.nonFinite === 'stop'
        ? `; nonFinite: 'skip' (--on-non-finite skip) skips such steps instead.`
        : '.'),
  );
}

/** Whether the state after `done` steps is handed out: every `checkpointEvery` steps, and after the last. */
function checkpointDue(done: number, config: TrainConfig): boolean {
  return done === config.steps || (config.checkpointEvery > 0 && done % config.checkpointEvery === 0);
}

/** The step's gradients, summed over its micro-batches, by parameter name. */
class GradientSum {
  readonly grads = new Map<string, tf.Tensor>();
  /** `nameOf`: TF.js variable name → the parameter's dotted name. */
  constructor(private readonly nameOf: ReadonlyMap<string, string>) {}

  /** Adds (and takes ownership of) one micro-batch's gradients, keyed by variable name. */
  add(grads: tf.NamedTensorMap): void {
    for (const [vname, g] of Object.entries(grads)) {
      const n = this.nameOf.get(vname)!;
      const old = this.grads.get(n);
      if (old) {
        this.grads.set(
          n,
          tf.tidy(() => tf.add(old, g)),
        );
        old.dispose();
        g.dispose();
      } else this.grads.set(n, g);
    }
  }

  /** sqrt(Σ g²) over every gradient, read back as one number. */
  norm(): number {
    return globalNorm(this.grads);
  }

  dispose(): void {
    for (const g of this.grads.values()) g.dispose();
  }
}

/** sqrt(Σ g²) over every gradient, read back as one number. */
function globalNorm(grads: Map<string, tf.Tensor>): number {
  if (grads.size === 0) return 0;
  const norm = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))));
  const value = norm.dataSync()[0];
  norm.dispose();
  return value;
}

function allFinite(model: SortedModel): boolean {
  const bad = tf.tidy(() =>
    tf.addN(model.namedParameters().map(([, v]) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(v)), 'int32')))),
  );
  const count = bad.dataSync()[0];
  bad.dispose();
  return count === 0;
}

/**
 * What a trainer cannot learn from, said before the first step rather than as NaN losses or a
 * TF.js error: fewer than two classes, labels out of range, non-finite inputs.
 */
export function checkTrainData(data: TrainData): void {
  if (isTokens(data)) return;
  const { name, numClasses, labels } = data;
  if (!(numClasses >= 2)) {
    throw new Error(`dataset '${name}' has ${numClasses} class(es); a classifier needs at least two`);
  }
  for (let i = 0; i < labels.length; i++) {
    if (!(labels[i] >= 0 && labels[i] < numClasses)) {
      throw new Error(`dataset '${name}': label ${labels[i]} of sample ${i} is outside 0..${numClasses - 1}`);
    }
  }
  if (isSequenceDataset(data)) return; // token ids: checked against the vocabulary by the embedding
  const images = data.images;
  const size = data.height * data.width * data.channels;
  for (let i = 0; i < images.length; i++) {
    if (!Number.isFinite(images[i])) {
      const sample = Math.floor(i / size);
      const feature = i % size;
      throw new Error(
        `dataset '${name}': sample ${sample}, value ${feature} (row ${Math.floor(feature / (data.width * data.channels))}, ` +
          `column ${Math.floor(feature / data.channels) % data.width}, channel ${feature % data.channels}) is ${images[i]}` +
          (data.normalisation ? ' after normalisation' : '') +
          '; fix or drop that sample',
      );
    }
  }
}
