/** MobileNetV2 as ONNX: stem, inverted residuals (1×1 expand, depthwise, 1×1 project; BN folded), last conv, head. */
import type { MobileNetV2 } from '../../models/mobilenetv2.js';
import type { OnnxGraph } from './graph.js';
import { convBn, globalAvgPool, linear, matchChannels, relu6 } from './layers.js';

/** `x`: NCHW [N, C, S, S]; returns logits [N, classes]. */
export function mobilenetV2Graph(g: OnnxGraph, model: MobileNetV2, x: string): string {
  const stem = convBn(g, x, model.config.imageSize, model.stem, model.stemBn);
  let h = relu6(g, stem.y);
  let size = stem.size;
  let cin = model.config.stem;
  for (const stage of model.stages.items) {
    for (const block of stage.items) {
      // Blocks without expansion start at the depthwise conv.
      const e = block.expand ? convBn(g, h, size, block.expand, block.bn1) : null;
      const d = e
        ? convBn(g, relu6(g, e.y), e.size, block.depthwise, block.bn2)
        : convBn(g, h, size, block.depthwise, block.bn2);
      const p = convBn(g, relu6(g, d.y), d.size, block.project, block.bn3);
      const out = block.spec.out;
      h = block.residual ? g.op('Add', [p.y, matchChannels(g, h, cin, out)], {}, `${block.name}.out`) : p.y;
      size = p.size;
      cin = out;
    }
  }
  const last = convBn(g, h, size, model.lastConv, model.lastBn);
  return linear(g, globalAvgPool(g, relu6(g, last.y)), model.head);
}
