/** The ResNet as ONNX: stem (and its max-pool), basic or bottleneck blocks (BN folded), global pool, head. */
import type { ResNet } from '../../models/resnet.js';
import { Conv2d, convOutSize } from '../../nn/conv2d.js';
import type { BlockConv } from '../../nn/basic_block.js';
import { Bottleneck } from '../../nn/bottleneck.js';
import type { OnnxGraph } from './graph.js';
import { convBn, globalAvgPool, linear, matchChannels, samePads } from './layers.js';

/** A block's convolution, if it is a plain one (dynamic PAD-Net convolutions have no ONNX form here). */
function plain(conv: BlockConv): Conv2d {
  if (!(conv instanceof Conv2d))
    throw new Error(
      `onnx: ${conv.constructor.name} is a dynamic convolution; only static ResNets are exported`,
    );
  return conv;
}

/** `x`: NCHW [N, C, S, S]; returns logits [N, classes]. */
export function resnetGraph(g: OnnxGraph, model: ResNet, x: string): string {
  let { y: h, size } = convBn(g, x, model.config.imageSize, model.stem, model.stemBn);
  h = g.op('Relu', [h]);
  if (model.config.stemLayout === 'imagenet') {
    const pads = model.config.padding === 'symmetric' ? [1, 1, 1, 1] : samePads(size, 3, 2);
    h = g.op('MaxPool', [h], { kernel_shape: [3, 3], strides: [2, 2], pads }, 'stem.pool');
    size = convOutSize(size, 3, 2, 'same');
  }
  let cin = model.config.stem;
  for (const stage of model.stages.items) {
    for (const block of stage.items) {
      let b: { y: string; size: number };
      if (block instanceof Bottleneck) {
        const a = convBn(g, h, size, block.conv1, block.bn1);
        const m = convBn(g, g.op('Relu', [a.y]), a.size, plain(block.conv2), block.bn2);
        b = convBn(g, g.op('Relu', [m.y]), m.size, block.conv3, block.bn3);
      } else {
        const a = convBn(g, h, size, plain(block.conv1), block.bn1);
        b = convBn(g, g.op('Relu', [a.y]), a.size, plain(block.conv2), block.bn2);
      }
      const out = block.spec.out;
      const shortcut =
        block.shortcut && block.shortcutBn
          ? convBn(g, h, size, block.shortcut, block.shortcutBn).y
          : matchChannels(g, h, cin, out);
      h = g.op('Relu', [g.op('Add', [b.y, shortcut])], {}, `${block.name}.out`);
      size = b.size;
      cin = out;
    }
  }
  return linear(g, globalAvgPool(g, h), model.head, true, cin); // the shared head reads the last width
}
