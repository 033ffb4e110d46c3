/**
 * Extraction: a standalone model equal to one sub-model of a shared network. Every parameter
 * of the small model is a prefix box of the shared one, so extraction is "build the shrunk
 * config, copy the boxes" — and BatchNorm statistics of that sub-model move with it.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SortedModel } from '../models/model.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import { FULL, subModelId, type SubModel } from './submodel.js';
import { prefix } from './slice.js';

export function extractSubModel<C>(
  shared: SortedModel<C>,
  sub: SubModel,
  build: (config: C) => SortedModel<C>,
): SortedModel<C> {
  shared.validate(sub);
  const small = build(shared.shrink(sub));
  const source = new Map(shared.namedParameters());
  for (const [name, v] of small.namedParameters()) {
    const w = source.get(name);
    if (!w)
      throw new Error(`extract: parameter '${name}' of the sub-model has no counterpart in the shared model`);
    v.assign(tf.tidy(() => tf.clone(prefix(w, v.shape, name))));
  }
  // Buffers (PAD masks) are sliced like the weights they belong to.
  const buffers = new Map(shared.namedBuffers());
  for (const [name, b] of small.namedBuffers()) {
    const w = buffers.get(name);
    if (!w)
      throw new Error(`extract: buffer '${name}' of the sub-model has no counterpart in the shared model`);
    b.assign(tf.tidy(() => tf.clone(prefix(w, b.shape, name))));
  }
  const key = subModelId(sub);
  const fullKey = subModelId(FULL);
  const sharedBns = new Map(namedBatchNorms(shared));
  for (const [name, m] of namedBatchNorms(small)) {
    const s = sharedBns.get(name)?.stats.get(key);
    if (!s) continue; // uncalibrated: the caller recalibrates the extracted model
    m.stats.set(fullKey, { mean: tf.clone(s.mean), variance: tf.clone(s.variance), count: s.count });
  }
  return small;
}
