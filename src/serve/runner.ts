/**
 * Runs micro-batches through a sorted classifier: concatenate the jobs' samples, normalise as in
 * training, one forward pass of the chosen sub-model (ctx.key = its id, so BatchNorm uses that
 * sub-model's statistics), softmax, split the rows back per job.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SortedModel } from '../models/model.js';
import type { TransformerConfig } from '../models/transformer.js';
import type { Preprocess } from '../io/checkpoint_codec.js';
import type { SubModel } from '../sorted/submodel.js';
import { sampleSize, type InputSpec, type Samples } from './inputs.js';
import { standardise } from '../deploy/preprocess.js';

/** Class probabilities per sample of one job. */
export type Probabilities = Float32Array[];

/** What a request's samples look like for `model` (image size from the config or the preprocessing). */
export function inputSpecOf(model: SortedModel, preprocess?: Preprocess): InputSpec {
  const img = preprocess?.image;
  if (model.input === 'tokens') {
    // The transformer families (plain or MoE) share TransformerConfig.
    const c = model.config as TransformerConfig;
    if (c.task !== 'classify')
      throw new Error('serve: /predict needs a classifier; this run is a language model');
    return { kind: 'tokens', maxLen: c.maxLen, vocab: c.vocab, padId: c.padId ?? 0 };
  }
  switch (model.family) {
    case 'mlp': {
      const inputs = (model.config as { inputs: number }).inputs;
      if (img && img.height * img.width * img.channels === inputs)
        return { kind: 'image', shape: [img.height, img.width, img.channels] };
      return { kind: 'image', shape: [inputs] };
    }
    default: {
      const c = model.config as { imageSize: number; inChannels: number };
      return { kind: 'image', shape: [c.imageSize, c.imageSize, c.inChannels] };
    }
  }
}

export class ClassifierRunner {
  readonly size: number;
  private readonly mean?: number[];
  private readonly std?: number[];

  constructor(
    readonly model: SortedModel,
    readonly spec: InputSpec,
    readonly subs: ReadonlyMap<string, SubModel>,
    preprocess?: Preprocess,
  ) {
    this.size = sampleSize(spec);
    if (spec.kind === 'image' && preprocess?.mean && preprocess.std) {
      const channels = spec.shape[spec.shape.length - 1];
      const n = preprocess.mean.length;
      if (n !== channels && n !== this.size)
        throw new Error(
          `serve: preprocess.mean has ${n} values; expected ${channels} (per channel) or ${this.size} (per feature)`,
        );
      if (preprocess.std.length !== n || preprocess.std.some((s) => !(s > 0)))
        throw new Error('serve: preprocess.std must match mean in length and be positive');
      this.mean = preprocess.mean;
      this.std = preprocess.std;
    }
  }

  private normalise(data: Float32Array): void {
    if (this.mean && this.std) standardise(data, this.mean, this.std);
  }

  /** Probabilities [n, classes] of sub-model `id` for every job's samples, split per job. */
  run(id: string, jobs: readonly Samples[]): Probabilities[] {
    const sub = this.subs.get(id);
    if (!sub) throw new Error(`serve: sub-model '${id}' is not served`);
    const n = jobs.reduce((a, j) => a + j.n, 0);
    const isTokens = this.spec.kind === 'tokens';
    const data = isTokens ? new Int32Array(n * this.size) : new Float32Array(n * this.size);
    let at = 0;
    for (const j of jobs) {
      data.set(j.data, at);
      at += j.data.length;
    }
    if (!isTokens) this.normalise(data as Float32Array);
    const shape = this.spec.kind === 'image' ? [n, ...this.spec.shape] : [n, this.size];
    const probs = tf.tidy(() => {
      const x = tf.tensor(data, shape, isTokens ? 'int32' : 'float32');
      return tf.softmax(this.model.forward(x, sub, { mode: 'eval', key: id }));
    });
    const flat = probs.dataSync() as Float32Array;
    const classes = probs.shape[1]!;
    probs.dispose();
    let row = 0;
    return jobs.map((j) =>
      Array.from({ length: j.n }, () => {
        const r = flat.slice(row * classes, (row + 1) * classes);
        row++;
        return r;
      }),
    );
  }

  /** Median ms of a batch of n zero samples through `id` (after one warm-up run). */
  timeBatch(id: string, n: number, reps = 3): number {
    const job: Samples = {
      n,
      data: this.spec.kind === 'tokens' ? new Int32Array(n * this.size) : new Float32Array(n * this.size),
    };
    this.run(id, [job]);
    const ms: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      this.run(id, [job]);
      ms.push(performance.now() - t0);
    }
    return ms.sort((a, b) => a - b)[Math.floor(reps / 2)];
  }
}
