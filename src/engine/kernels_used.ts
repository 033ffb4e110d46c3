/**
 * Which kernels a piece of work runs, and which of them a backend lacks: lists, per model family
 * and backend, every kernel a training step needs before a run fails halfway on a missing one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BatchNormTrain, BatchNormTrainGrad } from './kernels/batch_norm_train.js';
import { LayerNormFwd, LayerNormGrad } from './kernels/layer_norm.js';
import { Rotary } from './kernels/rotary.js';
import { RmsNormFwd, RmsNormGrad } from './kernels/rms_norm.js';
import { OPTIONAL_PREFIX_KERNELS } from './kernels/prefix_mat_mul.js';
import { SparsePerSampleConv2D } from './kernels/sparse_per_sample_conv2d.js';
import { PrefixConv2D, PrefixConv2DGradFilter, PrefixConv2DGradInput } from './kernels/prefix_conv2d.js';
import { ActivationGrad } from './kernels/activation.js';
import { AddRelu } from './kernels/add_relu.js';

/** The project's fused kernels: where a backend lacks one, its op composes stock kernels instead. */
const OPTIONAL: readonly string[] = [
  BatchNormTrain,
  BatchNormTrainGrad,
  LayerNormFwd,
  LayerNormGrad,
  RmsNormFwd,
  RmsNormGrad,
  Rotary,
  ...OPTIONAL_PREFIX_KERNELS,
  PrefixConv2D,
  PrefixConv2DGradInput,
  PrefixConv2DGradFilter,
  ActivationGrad,
  AddRelu,
  SparsePerSampleConv2D,
];

/**
 * Sorted unique names of the kernels `fn` runs on the current backend, gradients included.
 * `tf.profile` also lists the scopes of ops built with `customGrad` (e.g.
 * `softmaxCrossEntropy__op`); those are not kernels (the kernels they run are listed
 * themselves), so names with the `__op` suffix are left out.
 */
export async function kernelsUsed(fn: () => void | Promise<void>): Promise<string[]> {
  const info = await tf.profile(async () => {
    await fn();
    return [];
  });
  return [...new Set(info.kernelNames)]
    .filter((name) => !name.endsWith(OP_SCOPE_SUFFIX) && isKernel(name))
    .sort();
}

/**
 * Ops written with `tf.customGrad` (e.g. batchNormTrain) appear in profiles under the name of their
 * forward function; they are compositions, not kernels, and no backend registers them.
 */
function isKernel(name: string): boolean {
  return tf.getKernel(name, 'cpu') !== undefined || tf.getKernel(name, 'wasm') !== undefined;
}

/** The suffix tfjs-core's `op()` adds to op scope names (ops/operation.ts, OP_SCOPE_SUFFIX). */
const OP_SCOPE_SUFFIX = '__op';

/** The names among `names` that have no kernel registered for `backend` and no fallback. */
export function missingKernels(names: string[], backend: string): string[] {
  return names.filter((name) => tf.getKernel(name, backend) === undefined && !OPTIONAL.includes(name));
}
