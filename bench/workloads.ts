/** The training workloads the benchmarks share (bench/run.ts, bench/profile_step.ts), in one place. */
import * as tf from '@tensorflow/tfjs-core';
import { subModelContext } from '../src/nn/module.js';
import { FULL, type SubModel } from '../src/sorted/submodel.js';
import { getPreset } from '../src/run/presets.js';
import { ResNet } from '../src/models/resnet.js';
import { Transformer } from '../src/models/transformer.js';
import { Module } from '../src/nn/module.js';
import { Conv2d } from '../src/nn/conv2d.js';
import { Linear } from '../src/nn/linear.js';
import { globalAvgPool } from '../src/nn/functional.js';
import { seedStream } from '../src/nn/init.js';

/** One plain-SGD step: loss, gradients, update. */
export function sgdStep(vars: tf.Variable[], loss: () => tf.Scalar): void {
  tf.tidy(() => {
    const { value, grads } = tf.variableGrads(loss, vars);
    for (const v of vars) if (grads[v.name]) v.assign(tf.sub(v, tf.mul(grads[v.name], 0.01)));
    value.dataSync();
  });
}

/** One SGD step of sub-model `sub` of `net` on a batch: the sorted training step the benches time. */
export function sortedStep(net: ResNet, sub: SubModel, img: tf.Tensor, labels: tf.Tensor): void {
  sgdStep(
    net.trainableVariables(),
    () =>
      tf.losses.softmaxCrossEntropy(
        labels,
        net.forward(img, sub, subModelContext(sub, 'train')),
      ) as tf.Scalar,
  );
}

/** One-hot labels 0, 1, …, classes − 1, 0, 1, … for a batch of n. */
export function cyclicLabels(n: number, classes = 10): tf.Tensor2D {
  return tf.tidy(() =>
    tf.oneHot(
      tf.tensor1d(
        Array.from({ length: n }, (_, i) => i % classes),
        'int32',
      ),
      classes,
    ),
  ) as tf.Tensor2D;
}

/** The sorted ResNet the demo trains (preset resnet-small) on MNIST-shaped input. */
export function mnistResNet(): ResNet {
  const spec = getPreset('resnet-small').model({ channels: 1, size: 28, classes: 10 });
  if (spec.family !== 'resnet') throw new Error(`preset resnet-small builds a ${spec.family}, not a ResNet`);
  return new ResNet(spec.config);
}

/**
 * engine.md's anchor transformer LM (4 layers, d 256, 4 heads of 64, FFN 1024, seq 128, vocab 256) with a
 * fixed batch of byte ids and its next-byte loss.
 */
export function byteLm(batch: number): { lm: Transformer; loss: () => tf.Scalar; dispose: () => void } {
  const lm = new Transformer({
    task: 'lm',
    vocab: 256,
    dim: 256,
    heads: 4,
    headDim: 64,
    ffn: 1024,
    layers: 4,
    maxLen: 128,
  });
  const ids = tf.tensor2d(
    Array.from({ length: batch * 128 }, (_, i) => (i * 31) % 256),
    [batch, 128],
    'int32',
  );
  const target = tf.oneHot(tf.reshape(ids, [-1]) as tf.Tensor1D, 256);
  const loss = () =>
    tf.losses.softmaxCrossEntropy(
      target,
      tf.reshape(lm.forward(ids, FULL, subModelContext(FULL, 'train')), [-1, 256]),
    ) as tf.Scalar;
  return { lm, loss, dispose: () => (lm.dispose(), tf.dispose([ids, target])) };
}

/** engine.md's anchor CNN: 4 convs (3→32, 32→64 s2, 64→128 s2, 128→128), ReLU, global pool, linear. */
export class FourConv extends Module {
  readonly convs: Conv2d[];
  readonly head: Linear;
  constructor() {
    super();
    const s = seedStream(1);
    const spec: [number, number, number][] = [
      [3, 32, 1],
      [32, 64, 2],
      [64, 128, 2],
      [128, 128, 1],
    ];
    this.convs = spec.map(([i, o, st], k) =>
      this.addChild(`c${k}`, new Conv2d(i, o, 3, s, { stride: st, bias: true })),
    );
    this.head = this.addChild('head', new Linear(128, 10, s));
  }
  forward(x: tf.Tensor4D): tf.Tensor {
    let h = x;
    for (const c of this.convs) h = c.activated(h, 'relu');
    return this.head.forward(globalAvgPool(h));
  }
}
