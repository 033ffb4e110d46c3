/**
 * A trained many-in-one model ready to use: one set of weights, every sub-model of its grid
 * selectable per call (by id, spec or budget) without reloading anything (a sub-model's first call folds
 * its BatchNorm into its convolutions, kept in `folds`), and raw inputs preprocessed as at training time.
 * Built by `loadModel`; browser-safe.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CheckpointMeta } from '../io/checkpoint_codec.js';
import type { SortedModel } from '../models/model.js';
import type { TransformerConfig } from '../models/transformer.js';
import { Grid } from '../sorted/grid.js';
import { parseSubModel, subModelId, type SubModel } from '../sorted/submodel.js';
import { pickSubModel, type Budget } from '../infer/pick.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import { subModelContext } from '../nn/module.js';
import { FoldCache } from '../nn/fold_cache.js';
import { medianMsAsync } from '../train/timing.js';
import {
  inputShapeOf,
  prepareInput,
  standardise,
  type ImageOptions,
  type InputShape,
  type RawInput,
} from './preprocess.js';

/**
 * What a DeployedModel needs of a checkpoint's metadata. A loaded checkpoint brings all of
 * CheckpointMeta; a model built in memory (the server's tests, a freshly trained model) these three.
 */
export type DeployedMeta = Pick<CheckpointMeta, 'model' | 'grid' | 'preprocess'> & Partial<CheckpointMeta>;

/** A sample in the model's own layout: float32 values of `shape`, or up to `maxLen` token ids. */
export type InputSpec =
  | { kind: 'image'; shape: readonly number[] }
  | { kind: 'tokens'; maxLen: number; vocab: number; padId: number };

/** Values per sample of `spec` (token samples are padded to maxLen). */
export function sampleSize(spec: InputSpec): number {
  return spec.kind === 'image' ? spec.shape.reduce((a, b) => a * b, 1) : spec.maxLen;
}

/** One sub-model as a deployment sees it. */
export interface SubModelInfo {
  id: string;
  sub: SubModel;
  params: number;
  /** Forward FLOPs per example (multiply-add = 2). */
  flops: number;
  /** Test accuracy, where the run was evaluated (eval.json). */
  accuracy?: number;
  /** Batch-1 latency in ms: measured here by `measureLatency`, else as evaluated at training time. */
  latencyMs?: number;
  /** Whether `latencyMs` was measured on this device or comes from the training machine's evaluation. */
  latencySource?: 'this device' | 'eval';
}

/** What `predict` runs: a sub-model by spec or id, or the best one within a budget; default the largest. */
export interface PredictOptions extends Budget, ImageOptions {
  sub?: SubModel | string;
}

export interface Prediction {
  /** Class name (or the index as text when the checkpoint has no names). */
  label: string;
  index: number;
  /** Probability of the predicted class. */
  probability: number;
  /** Softmax over every class, by class index. */
  probabilities: number[];
  /** The sub-model that ran. */
  subModel: string;
  /** What was done to fit an image to the training images (inverted, transparency composited), if anything. */
  notes?: string[];
}

/** Rows of eval.json that a deployment reads (the rest is ignored). */
export interface EvalSummary {
  id: string;
  accuracy?: number;
  latencyMs?: number;
}

export class DeployedModel {
  readonly grid: Grid;
  /** Class names by index. */
  readonly classes: string[];
  private readonly evaluated: Map<string, EvalSummary>;
  private readonly measured = new Map<string, number>();
  private readonly hasBatchNorm: boolean;
  /**
   * The weights this deployment runs, folded per sub-model (each convolution with its BatchNorm), made on
   * a sub-model's first call and kept up to `folds.maxBytes` (256 MiB by default; 0 runs the stored
   * weights as they are). Kept apart from the model: training it or loading weights makes them again.
   */
  readonly folds = new FoldCache();

  constructor(
    readonly meta: DeployedMeta,
    readonly model: SortedModel,
    evalRows: readonly EvalSummary[] = [],
    /** Names the checkpoint in errors. */
    readonly source = 'model',
  ) {
    this.grid = new Grid(meta.grid ?? {}, model);
    const classCount = (model.config as { classes?: number }).classes ?? 0;
    this.classes = meta.preprocess?.classes ?? Array.from({ length: classCount }, (_, i) => String(i));
    this.evaluated = new Map(evalRows.map((r) => [r.id, r]));
    this.hasBatchNorm = namedBatchNorms(model).length > 0;
  }

  /** The model's input, [H, W, C]; a language model has none (it takes tokens: use generate()). */
  get inputShape(): InputShape {
    return inputShapeOf(this.meta);
  }

  /**
   * A sample as the model takes it, for callers that send values in the model's layout (the
   * server): images at the architecture's size, feature rows flat, token ids for transformers.
   * Throws for a language model (it generates; it does not classify).
   */
  get inputSpec(): InputSpec {
    const model = this.model;
    const img = this.meta.preprocess?.image;
    if (model.input === 'tokens') {
      // The transformer families (plain or MoE) share TransformerConfig.
      const c = model.config as TransformerConfig;
      if (c.task !== 'classify') throw new Error('a language model generates text; it does not classify');
      return { kind: 'tokens', maxLen: c.maxLen, vocab: c.vocab, padId: c.padId ?? 0 };
    }
    if (model.family === 'mlp') {
      const inputs = (model.config as { inputs: number }).inputs;
      if (img && img.height * img.width * img.channels === inputs)
        return { kind: 'image', shape: [img.height, img.width, img.channels] };
      return { kind: 'image', shape: [inputs] };
    }
    const c = model.config as { imageSize: number; inChannels: number };
    return { kind: 'image', shape: [c.imageSize, c.imageSize, c.inChannels] };
  }

  /**
   * Checks the checkpoint's normalisation against `inputSpec`: statistics per channel or per
   * feature, std positive. Throws naming what does not fit.
   */
  checkNormalisation(): void {
    const spec = this.inputSpec;
    const pre = this.meta.preprocess;
    if (spec.kind !== 'image' || !pre?.mean || !pre.std) return;
    const size = sampleSize(spec);
    const channels = spec.shape[spec.shape.length - 1];
    const n = pre.mean.length;
    if (n !== channels && n !== size)
      throw new Error(
        `preprocess.mean has ${n} values; expected ${channels} (per channel) or ${size} (per feature)`,
      );
    if (pre.std.length !== n || pre.std.some((s) => !(s > 0)))
      throw new Error('preprocess.std must match mean in length and be positive');
  }

  /**
   * Class probabilities [n × classes] of n samples given in `inputSpec`'s layout, as sent before
   * normalisation (float values are normalised in place), read back synchronously: the batch
   * path the server runs. `predictBatch` is the same forward and softmax for raw examples.
   */
  classify(x: Float32Array | Int32Array, n: number, id: string, sub: SubModel): Float32Array {
    const spec = this.inputSpec;
    const pre = this.meta.preprocess;
    if (x instanceof Float32Array && pre?.mean && pre.std) standardise(x, pre.mean, pre.std);
    const shape = spec.kind === 'image' ? [n, ...spec.shape] : [n, spec.maxLen];
    const probs = this.probabilities(x, shape, sub);
    const values = probs.dataSync() as Float32Array;
    probs.dispose();
    return values;
  }

  /** Every sub-model of the grid, smallest first: cost, and accuracy/latency where known. */
  subModels(): SubModelInfo[] {
    return this.grid.entries.map((e) => {
      const ev = this.evaluated.get(e.id);
      const here = this.measured.get(e.id);
      const latencyMs = here ?? ev?.latencyMs;
      return {
        id: e.id,
        sub: e.sub,
        params: e.cost.params,
        flops: e.cost.flops,
        ...(ev?.accuracy !== undefined ? { accuracy: ev.accuracy } : {}),
        ...(latencyMs !== undefined
          ? { latencyMs, latencySource: here !== undefined ? 'this device' : 'eval' }
          : {}),
      } as SubModelInfo;
    });
  }

  /** The sub-model `options` ask for: an explicit one, the best within a budget, or the largest. */
  select(options: PredictOptions = {}): { id: string; sub: SubModel } {
    const { sub, matchPolarity: _, ...budget } = options;
    const limits = Object.values(budget).some((v) => v !== undefined);
    if (sub !== undefined && limits) throw new Error('predict: give either sub or a budget, not both');
    if (sub !== undefined) {
      const spec = typeof sub === 'string' ? parseSubModel(sub, 'sub') : sub;
      this.model.validate(spec);
      const entry = this.grid.find(spec, this.model); // 'full' is the grid's largest when it is the whole model
      const id = entry?.id ?? subModelId(spec);
      if (!entry) {
        if (this.hasBatchNorm) {
          throw new Error(
            `sub-model '${id}' is not in the grid of ${this.source}, so it has no BatchNorm statistics; ` +
              `choose one of ${this.grid.entries.map((e) => e.id).join(' ')}`,
          );
        }
      }
      return { id, sub: entry?.sub ?? spec };
    }
    if (!limits) return this.grid.largest;
    if (budget.maxLatencyMs !== undefined && this.subModels().some((s) => s.latencyMs === undefined)) {
      throw new Error(
        'predict: maxLatencyMs needs latencies: call measureLatency() on this device, or evaluate the run (sortednet eval)',
      );
    }
    const best = pickSubModel(this.subModels(), budget);
    if (!best) {
      const s = this.grid.smallest;
      throw new Error(
        `no sub-model of ${this.source} fits ${JSON.stringify(budget)}; the smallest is ${s.id} ` +
          `(${s.cost.flops} FLOPs, ${s.cost.params} params)`,
      );
    }
    return this.grid.get(best.id);
  }

  /** Class probabilities of one raw example. */
  async predict(input: RawInput, options: PredictOptions = {}): Promise<Prediction> {
    return (await this.predictBatch([input], options))[0];
  }

  /** Class probabilities of several raw examples, in one forward pass of one sub-model. */
  async predictBatch(inputs: readonly RawInput[], options: PredictOptions = {}): Promise<Prediction[]> {
    if (inputs.length === 0) return [];
    const { id, sub } = this.select(options);
    const size = this.inputShape.height * this.inputShape.width * this.inputShape.channels;
    const x = new Float32Array(inputs.length * size);
    const notes = inputs.map(() => [] as string[]);
    inputs.forEach((input, i) =>
      x.set(
        prepareInput(input, this.inputShape, this.meta.preprocess, `input ${i}`, {
          matchPolarity: options.matchPolarity,
          notes: notes[i],
        }),
        i * size,
      ),
    );
    const { height, width, channels } = this.inputShape;
    const probs = this.probabilities(x, [inputs.length, height, width, channels], sub);
    const values = (await probs.data()) as Float32Array;
    probs.dispose();
    const classes = values.length / inputs.length;
    return inputs.map((_, i) => {
      const p = Array.from(values.subarray(i * classes, (i + 1) * classes));
      const index = p.indexOf(Math.max(...p));
      return {
        label: this.classes[index] ?? String(index),
        index,
        probability: p[index],
        probabilities: p,
        subModel: id,
        ...(notes[i].length ? { notes: notes[i] } : {}),
      };
    });
  }

  /**
   * Median batch-1 latency of every sub-model on this device (after a warm-up run each); later
   * `maxLatencyMs` budgets and `subModels()` use these figures.
   */
  async measureLatency(options: { reps?: number } = {}): Promise<SubModelInfo[]> {
    const reps = options.reps ?? 5;
    const size = this.inputShape.height * this.inputShape.width * this.inputShape.channels;
    const x = new Float32Array(size);
    for (const e of this.grid.entries) this.measured.set(e.id, await this.timeOne(x, e.id, e.sub, reps));
    return this.subModels();
  }

  /** Median milliseconds of `reps` batch-1 forward passes of one sub-model, read back included. */
  async timeOne(x: Float32Array, id: string, sub: SubModel, reps = 5): Promise<number> {
    const { height, width, channels } = this.inputShape;
    return medianMsAsync(async () => {
      const y = tf.tidy(() => this.logits(x, [1, height, width, channels], sub));
      await y.data();
      y.dispose();
    }, reps);
  }

  /** Softmax over the logits of sub-model `sub` (its context key picks its BatchNorm statistics). */
  private probabilities(x: Float32Array | Int32Array, shape: number[], sub: SubModel): tf.Tensor {
    return tf.tidy(() => tf.softmax(this.logits(x, shape, sub)));
  }

  private logits(x: Float32Array | Int32Array, shape: number[], sub: SubModel): tf.Tensor {
    const input = tf.tensor(x, shape, x instanceof Int32Array ? 'int32' : 'float32');
    return this.model.forward(input, sub, subModelContext(sub, 'eval', { folds: this.folds }));
  }

  dispose(): void {
    this.folds.clear();
    this.model.dispose();
  }
}
