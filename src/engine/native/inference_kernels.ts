/**
 * The per-row kernels of inference (src/engine/kernels/rms_norm.ts, rotary.ts, scale_shift.ts) in the addon: the
 * same arithmetic in C, equal bit for bit. Why: on the wasm heap the JavaScript loops are slow (V8 reads it
 * through typed-array views), a tenth of a batched decoding step's time for work that is a few microseconds in C.
 */
import * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO } from '../kernels/float_io.js';
import { RmsNormFwd } from '../kernels/rms_norm.js';
import { Rotary, rotaryShape } from '../kernels/rotary.js';
import { ScaleShift, scaleShiftChannels, type ScaleShiftAttrs } from '../kernels/scale_shift.js';
import { ACTIVATION_CODE } from '../kernels/activation.js';
import type { NativeBlas } from './blas.js';

type Inputs = Record<string, tf.TensorInfo>;

/** x [..., e], gamma [e] → y, rstd [rows] */
export function nativeRmsNorm(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { x, gamma } = args.inputs as Inputs;
    const { epsilon } = args.attrs as { epsilon: number };
    const e = x.shape[x.shape.length - 1];
    const rows = tf.util.sizeFromShape(x.shape) / e;
    const { ins, outs, infos } = floatKernelIO(args.backend, RmsNormFwd, [x, gamma], [x.shape, [rows]]);
    blas.rmsNorm(ins[0], ins[1], outs[0], outs[1], e, epsilon);
    return infos;
  };
}

/** x [..., T, d], cos, sin [T, d] → y */
export function nativeRotary(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { x, cos, sin } = args.inputs as Inputs;
    const { inverse } = args.attrs as { inverse: boolean };
    const [T] = rotaryShape(x, cos, sin);
    const { ins, outs, infos } = floatKernelIO(args.backend, Rotary, [x, cos, sin], [x.shape]);
    blas.rotary(ins[0], ins[1], ins[2], outs[0], T, inverse);
    return infos[0];
  };
}

/** x [..., C], scale, shift [C] → act(x · scale + shift) */
export function nativeScaleShift(blas: NativeBlas): tf.KernelFunc {
  return (args) => {
    const { x, scale, shift } = args.inputs as Inputs;
    const { activation } = args.attrs as unknown as ScaleShiftAttrs;
    const C = scaleShiftChannels(x, scale, shift);
    const { ins, outs, infos } = floatKernelIO(args.backend, ScaleShift, [x, scale, shift], [x.shape]);
    blas.scaleShift(ins[0], ins[1], ins[2], outs[0], C, ACTIVATION_CODE[activation]);
    return infos[0];
  };
}
