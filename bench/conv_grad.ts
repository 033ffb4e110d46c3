/**
 * The input gradient of a convolution on `wasm`: tfjs's stock `Conv2DBackpropInput` against the
 * project's (src/engine/kernels/conv2d_backprop_input_wasm.ts), side by side on ResNet-like
 * shapes at batch 64, with the forward convolution for scale. Run: node dist/bench/conv_grad.js
 */
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { stockConv2DBackpropInputWasm } from '../src/engine/kernels/conv2d_backprop_input_wasm.js';
import { benchCommand, parseBench } from './cli.js';

parseBench(benchCommand('conv_grad', "Conv2DBackpropInput on wasm: tfjs's stock kernel vs the project's"));

const BATCH = 64;
const REPEATS = 7;

interface Shape {
  size: number; // input height = width
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
}

const SHAPES: Shape[] = [
  { size: 28, inChannels: 16, outChannels: 16, kernel: 3, stride: 1 },
  { size: 14, inChannels: 32, outChannels: 32, kernel: 3, stride: 1 },
  { size: 7, inChannels: 64, outChannels: 64, kernel: 3, stride: 1 },
  { size: 16, inChannels: 64, outChannels: 64, kernel: 3, stride: 1 },
  { size: 28, inChannels: 16, outChannels: 32, kernel: 3, stride: 2 },
  { size: 14, inChannels: 32, outChannels: 64, kernel: 3, stride: 2 },
  { size: 28, inChannels: 16, outChannels: 32, kernel: 1, stride: 2 }, // projection shortcut
];

/** Median wall time of `f` in ms, after one warm-up call; wasm kernels finish before they return. */
function medianMs(f: () => void): number {
  f();
  const times: number[] = [];
  for (let r = 0; r < REPEATS; ++r) {
    const start = performance.now();
    f();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

async function main(): Promise<void> {
  await initEngine('wasm');
  const stock = stockConv2DBackpropInputWasm();
  const ours = tf.getKernel(tf.Conv2DBackpropInput, 'wasm');
  if (stock === undefined || ours === undefined) {
    throw new Error('conv_grad: the stock kernel was not replaced');
  }
  const backend = tf.backend();

  console.log(`Conv2DBackpropInput on wasm, batch ${BATCH}, 'same' padding, median of ${REPEATS}`);
  console.log(
    '| input | filter | stride | forward ms | stock ms | stock GFLOP/s | new ms | new GFLOP/s | speed-up |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const s of SHAPES) {
    const inputShape: [number, number, number, number] = [BATCH, s.size, s.size, s.inChannels];
    const x = tf.randomUniform(inputShape, -1, 1);
    const filter = tf.randomUniform([s.kernel, s.kernel, s.inChannels, s.outChannels], -1, 1);
    const y = tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, s.stride, 'same');
    const dy = tf.randomUniform(y.shape, -1, 1);
    const attrs = { strides: s.stride, pad: 'same', dataFormat: 'NHWC', inputShape };
    const runOnce = (config: tf.KernelConfig) => () => {
      const dx = config.kernelFunc({ inputs: { dy, filter }, backend, attrs }) as tf.TensorInfo;
      backend.disposeData(dx.dataId);
    };
    const dxOf = (config: tf.KernelConfig) => {
      const dx = config.kernelFunc({ inputs: { dy, filter }, backend, attrs }) as tf.TensorInfo;
      return tf.engine().makeTensorFromTensorInfo(dx);
    };
    const difference = tf.tidy(() => tf.max(tf.abs(tf.sub(dxOf(stock), dxOf(ours)))).dataSync()[0]!);
    if (!(difference < 1e-3)) {
      throw new Error(`conv_grad: stock and new dx differ by ${difference} on ${JSON.stringify(s)}`);
    }

    const forwardMs = medianMs(() =>
      tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, s.stride, 'same').dispose(),
    );
    const stockMs = medianMs(runOnce(stock));
    const newMs = medianMs(runOnce(ours));
    // Multiply-adds that count: one per output position, filter tap, input and output channel.
    const flops = 2 * BATCH * y.shape[1]! * y.shape[2]! * s.kernel * s.kernel * s.inChannels * s.outChannels;
    const gflops = (ms: number) => (flops / ms / 1e6).toFixed(1);
    console.log(
      `| ${s.size}x${s.size}x${s.inChannels} | ${s.kernel}x${s.kernel}x${s.inChannels}x${s.outChannels} | ` +
        `${s.stride} | ${forwardMs.toFixed(1)} | ${stockMs.toFixed(1)} | ${gflops(stockMs)} | ` +
        `${newMs.toFixed(1)} | ${gflops(newMs)} | ${(stockMs / newMs).toFixed(1)}x |`,
    );
    tf.dispose([x, filter, y, dy]);
  }
}

await main();
