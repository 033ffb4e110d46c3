import * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO } from './float_io.js';
import { ACTIVATION_CODE, type FusedActivation } from './activation.js';

/**
 * y = act(x · scale + shift) per channel (the last axis), for the `cpu` backend and the twin of the addon's C
 * kernel on `wasm`: batch norm in
 * evaluation, with its statistics and affine folded into one scale and shift per channel
 * (src/engine/ops/scale_shift.ts). Why: as stock kernels an evaluation batch norm of a sub-network was two
 * slices of γ and β, the batch-norm kernel and the activation, a fixed cost per layer that small batches
 * (a server's) pay in full. Inference only: no gradient is registered.
 */
export const ScaleShift = 'SortedNetScaleShift';

export interface ScaleShiftAttrs {
  activation: FusedActivation;
}

/** The channels C of a call: x [..., C] with scale and shift [C], checked (shared with the native kernel). */
export function scaleShiftChannels(x: tf.TensorInfo, scale: tf.TensorInfo, shift: tf.TensorInfo): number {
  const C = x.shape[x.shape.length - 1];
  if (!tf.util.arraysEqual(scale.shape, [C]) || !tf.util.arraysEqual(shift.shape, [C]))
    throw new Error(
      `${ScaleShift}: scale and shift must be [${C}] for x [${x.shape.join(', ')}], got [${scale.shape.join(', ')}] and [${shift.shape.join(', ')}]`,
    );
  return C;
}

function scaleShift(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, scale, shift } = args.inputs as Record<string, tf.TensorInfo>;
  const { activation } = args.attrs as unknown as ScaleShiftAttrs;
  const C = scaleShiftChannels(x, scale, shift);
  const { ins, outs, infos } = floatKernelIO(args.backend, ScaleShift, [x, scale, shift], [x.shape]);
  const [xs, a, b] = ins;
  const [y] = outs;
  const code = ACTIVATION_CODE[activation];
  for (let i = 0; i < xs.length; i += C)
    for (let c = 0; c < C; c++) {
      const v = Math.fround(Math.fround(xs[i + c] * a[c]) + b[c]);
      y[i + c] = code === 0 ? v : code === 1 ? Math.max(v, 0) : Math.min(Math.max(v, 0), 6);
    }
  return infos[0];
}

/**
 * On `cpu` only: on `wasm` this loop over heap views was slower than the stock kernels it replaces, so there
 * the native addon registers it (src/engine/native/inference_kernels.ts) or the op composes stock kernels.
 */
export const scaleShiftConfigs: tf.KernelConfig[] = [
  { kernelName: ScaleShift, backendName: 'cpu', kernelFunc: scaleShift },
];
