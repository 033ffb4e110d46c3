/** The one place where kernels the project adds to TensorFlow.js backends are registered. */
import * as tf from '@tensorflow/tfjs-core';
import { conv2DBackpropFilterWasmConfig } from './conv2d_backprop_filter_wasm.js';
import { replaceConv2DBackpropInputWasm } from './conv2d_backprop_input_wasm.js';
import { depthwiseConv2dNativeBackpropFilterWasmConfig } from './depthwise_conv2d_native_backprop_filter_wasm.js';
import { depthwiseConv2dNativeBackpropInputWasmConfig } from './depthwise_conv2d_native_backprop_input_wasm.js';
import { unsortedSegmentSumWasmConfig } from './unsorted_segment_sum_wasm.js';
import { batchNormTrainConfigs } from './batch_norm_train.js';
import { layerNormConfigs } from './layer_norm.js';
import { rotaryConfigs } from './rotary.js';
import { cachedAttentionConfigs } from './cached_attention.js';
import { scaleShiftConfigs } from './scale_shift.js';
import { rmsNormConfigs } from './rms_norm.js';
import { replaceSliceWasm } from './slice_wasm.js';
import { replaceBatchMatMulWasm } from './batch_mat_mul_wasm.js';
import { replaceIdentityWasm } from './identity_wasm.js';
import { replaceGatherWasm } from './gather_wasm.js';

/**
 * Kernels the `wasm` backend of tfjs 4.22 lacks for training: the filter gradient of a
 * convolution, both depthwise gradients, and gather's gradient (embeddings).
 */
const WASM_KERNELS: readonly tf.KernelConfig[] = [
  conv2DBackpropFilterWasmConfig,
  depthwiseConv2dNativeBackpropFilterWasmConfig,
  depthwiseConv2dNativeBackpropInputWasmConfig,
  unsortedSegmentSumWasmConfig,
];

/**
 * The project's own fused kernels (normalisations with their gradients), for the backends whose memory
 * JavaScript reaches; on other backends their ops fall back to compositions of stock kernels.
 */
const FUSED_KERNELS: readonly tf.KernelConfig[] = [
  ...batchNormTrainConfigs,
  ...layerNormConfigs,
  ...rmsNormConfigs,
  ...rotaryConfigs,
  ...cachedAttentionConfigs,
  ...scaleShiftConfigs,
];

let registered = false;

export function registerProjectKernels(): void {
  if (registered) return;
  registered = true;
  // A later tfjs that ships its own kernel keeps it.
  for (const config of WASM_KERNELS) {
    if (tf.getKernel(config.kernelName, config.backendName) === undefined) tf.registerKernel(config);
  }
  // Kernels wasm has but runs far slower than it could (bench/conv_grad.ts, bench/kernels.ts): replaced,
  // the stock one kept underneath where it still serves some inputs.
  replaceConv2DBackpropInputWasm(); // 9–17× at stride 1
  replaceSliceWasm(); // weight prefixes: 100–450×
  replaceBatchMatMulWasm(); // transposed operands: 5–30×
  replaceIdentityWasm(); // the tape's clones share memory instead of copying it
  replaceGatherWasm(); // embedding lookups: 27–60 µs → a copy per row
  for (const config of FUSED_KERNELS) tf.registerKernel(config);
}
