/**
 * What the wasm convolution gradient kernels share: the geometry of the forward convolution whose
 * gradient they compute, checked against the dy they were given.
 */
import * as tf from '@tensorflow/tfjs-core';

type Shape4 = [number, number, number, number];

/** The forward convolution's attributes, as the gradient kernels receive them (no dilations: 1). */
interface ConvAttrs {
  strides: number | [number, number];
  dilations?: number | [number, number];
  pad: Parameters<typeof tf.backend_util.computeConv2DInfo>[4];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/**
 * The geometry of the forward convolution `kernelName` is the gradient of; throws, naming the shapes
 * (the input as `xName`), when dy is not that convolution's output shape.
 */
export function forwardConvInfo(
  kernelName: string,
  attrs: ConvAttrs,
  depthwise: boolean,
  shapes: { x: Shape4; filter: Shape4; dy: readonly number[]; xName: 'x' | 'input' },
): tf.backend_util.Conv2DInfo {
  const { strides, dilations, pad, dimRoundingMode } = attrs;
  const info = tf.backend_util.computeConv2DInfo(
    shapes.x,
    shapes.filter,
    strides,
    dilations ?? 1,
    pad,
    dimRoundingMode,
    depthwise,
    'channelsLast',
  );
  const { batchSize, outHeight, outWidth, outChannels } = info;
  if (shapes.dy.join() !== [batchSize, outHeight, outWidth, outChannels].join()) {
    throw new Error(
      `${kernelName} (wasm): dy shape [${shapes.dy}] does not match the forward output ` +
        `[${[batchSize, outHeight, outWidth, outChannels]}] of ${shapes.xName} [${shapes.x}] and filter [${shapes.filter}]`,
    );
  }
  return info;
}

/** Runs other wasm kernels on the backend's tensors, as one kernel built from others does. */
export function wasmKernelRunner(backend: tf.KernelBackend, kernelName: string) {
  const run = (name: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap): tf.TensorInfo => {
    const kernel = tf.getKernel(name, 'wasm');
    if (kernel === undefined) throw new Error(`${kernelName} (wasm): needs the wasm kernel '${name}'`);
    return kernel.kernelFunc({ inputs, backend, attrs }) as tf.TensorInfo;
  };
  const dispose = (t: tf.TensorInfo): void => void backend.disposeData(t.dataId);
  return { run, dispose };
}

/** NHWC explicit padding: rows above and below, columns left and right. */
export const nhwcPadding = (top: number, bottom: number, left: number, right: number) =>
  [
    [0, 0],
    [top, bottom],
    [left, right],
    [0, 0],
  ] as [[0, 0], [number, number], [number, number], [0, 0]];
