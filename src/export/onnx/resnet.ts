/** The ResNet as ONNX: stem, basic blocks (BN folded), global pool, head. */
import type { ResNet } from '../../models/resnet.js';
import type { OnnxGraph } from './graph.js';
import { convBn, globalAvgPool, linear, matchChannels } from './layers.js';

/** `x`: NCHW [N, C, S, S]; returns logits [N, classes]. */
export function resnetGraph(g: OnnxGraph, model: ResNet, x: string): string {
  let { y: h, size } = convBn(g, x, model.config.imageSize, model.stem, model.stemBn);
  h = g.op('Relu', [h]);
  let cin = model.config.stem;
  for (const stage of model.stages.items) {
    for (const block of stage.items) {
      const a = convBn(g, h, size, block.conv1, block.bn1);
      const b = convBn(g, g.op('Relu', [a.y]), a.size, block.conv2, block.bn2);
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
