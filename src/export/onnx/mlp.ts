/** The MLP as ONNX: flatten, then Gemm + activation per hidden layer, then the head. */
import type { Mlp } from '../../models/mlp.js';
import type { OnnxGraph } from './graph.js';
import { activation, linear } from './layers.js';

/** `x`: the graph input (any sample shape with `inputs` values); returns logits [N, classes]. */
export function mlpGraph(g: OnnxGraph, model: Mlp, x: string): string {
  let h = g.op('Reshape', [x, g.ints('flat', [0, -1])], {}, 'flat');
  for (const layer of model.layers.items)
    h = activation(g, linear(g, h, layer), model.config.activation ?? 'relu');
  const hidden = model.config.hidden;
  return linear(g, h, model.head, true, hidden[hidden.length - 1]); // the shared head reads the last width
}
