/**
 * ONNX export of one sub-model: extract it as a standalone model (its prefix weights and its
 * own BatchNorm statistics, src/sorted/extract.ts), then write the graph family by family.
 * Image models take NHWC float32 [N, H, W, C] like the TypeScript models (transposed to NCHW
 * inside); transformers take int64 token ids [N, T] with dynamic N and T.
 */
import { buildModel, specOf, type SortedModel } from '../../models/index.js';
import type { Mlp } from '../../models/mlp.js';
import type { ResNet } from '../../models/resnet.js';
import type { MobileNetV2 } from '../../models/mobilenetv2.js';
import type { Transformer } from '../../models/transformer.js';
import { extractSubModel } from '../../models/extract.js';
import { namedBatchNorms } from '../../nn/batchnorm.js';
import { subModelId, type SubModel } from '../../sorted/submodel.js';
import { OnnxGraph, OPSET } from './graph.js';
import { mlpGraph } from './mlp.js';
import { resnetGraph } from './resnet.js';
import { mobilenetV2Graph } from './mobilenetv2.js';
import { transformerGraph, type BlockCache } from './transformer.js';

export { OPSET };

export interface OnnxExport {
  bytes: Uint8Array;
  /** Graph input: 'input' (float32 NHWC images, or [N, features] for an MLP) or 'input_ids' (int64). */
  input: { name: string; type: 'float32' | 'int64'; shape: (number | string)[] };
  output: { name: 'logits'; shape: (number | string)[] };
  /**
   * With `kvCache`: the decoder's cache as transformers.js / Optimum name it. Inputs
   * `past_key_values.N.key` / `.value` [N, heads_N, past, headDim] (past = 0 on the first call),
   * outputs `present.N.key` / `.value` [N, heads_N, past + T, headDim], fed back as the next past.
   */
  cache?: { layers: number; heads: number[]; headDim: number; inputs: string[]; outputs: string[] };
  opset: number;
  sub: string;
}

export interface OnnxExportOptions {
  /** An MLP's sample shape (e.g. [28, 28, 1]); default [inputs]. */
  sampleShape?: number[];
  /** Extra metadata_props (e.g. the preprocessing as JSON). */
  metadata?: Record<string, string>;
  /** LMs: export the decoder with KV-cache inputs and outputs (incremental decoding). */
  kvCache?: boolean;
}

export function exportOnnx(model: SortedModel, sub: SubModel, opts: OnnxExportOptions = {}): OnnxExport {
  const id = subModelId(sub);
  const small = extractSubModel(model, sub, (config) => buildModel(specOf(model, config)));
  try {
    const g = new OnnxGraph(`sortednet ${model.family} ${id}`);
    let input: OnnxExport['input'];
    let output: OnnxExport['output'];
    let logits: string;
    let cache: OnnxExport['cache'];
    let presents = () => {};
    if (opts.kvCache && small.family !== 'transformer')
      throw new Error(`onnx: a KV cache is for transformer LMs, not '${small.family}'`);
    switch (small.family) {
      case 'transformer': {
        const t = small as unknown as Transformer;
        input = { name: 'input_ids', type: 'int64', shape: ['N', 'T'] };
        const ids = g.input(input.name, 'int64', input.shape);
        if (opts.kvCache) {
          if (t.config.task !== 'lm') throw new Error('onnx: --kv-cache is for language models (task lm)');
          const heads = t.blocks.items.map((b) => b.attn.heads);
          const hd = t.config.headDim;
          const caches: BlockCache[] = heads.map((h, i) => ({
            pastKey: g.input(`past_key_values.${i}.key`, 'float32', ['N', h, 'past', hd]),
            pastValue: g.input(`past_key_values.${i}.value`, 'float32', ['N', h, 'past', hd]),
          }));
          logits = transformerGraph(g, t, ids, caches);
          // After the logits (Optimum's output order).
          presents = () => {
            for (const [i, c] of caches.entries()) {
              g.output(`present.${i}.key`, c.presentKey!, 'float32', ['N', heads[i], 'past+T', hd]);
              g.output(`present.${i}.value`, c.presentValue!, 'float32', ['N', heads[i], 'past+T', hd]);
            }
          };
          cache = {
            layers: heads.length,
            heads,
            headDim: hd,
            inputs: caches.flatMap((_, i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]),
            outputs: caches.flatMap((_, i) => [`present.${i}.key`, `present.${i}.value`]),
          };
        } else logits = transformerGraph(g, t, ids);
        output = {
          name: 'logits',
          shape: t.config.task === 'lm' ? ['N', 'T', t.config.vocab] : ['N', t.config.classes ?? 2],
        };
        break;
      }
      case 'mlp': {
        const m = small as unknown as Mlp;
        const shape = opts.sampleShape ?? [m.config.inputs];
        if (shape.reduce((a, b) => a * b, 1) !== m.config.inputs)
          throw new Error(`onnx: sample shape [${shape}] does not hold the MLP's ${m.config.inputs} inputs`);
        input = { name: 'input', type: 'float32', shape: ['N', ...shape] };
        logits = mlpGraph(g, m, g.input(input.name, 'float32', input.shape));
        output = { name: 'logits', shape: ['N', m.config.classes] };
        break;
      }
      case 'resnet':
      case 'mobilenetv2': {
        const c = (small as unknown as ResNet | MobileNetV2).config;
        input = { name: 'input', type: 'float32', shape: ['N', c.imageSize, c.imageSize, c.inChannels] };
        const nchw = g.op(
          'Transpose',
          [g.input(input.name, 'float32', input.shape)],
          { perm: [0, 3, 1, 2] },
          'nchw',
        );
        logits =
          small.family === 'resnet'
            ? resnetGraph(g, small as unknown as ResNet, nchw)
            : mobilenetV2Graph(g, small as unknown as MobileNetV2, nchw);
        output = { name: 'logits', shape: ['N', c.classes] };
        break;
      }
      default:
        throw new Error(`onnx: no exporter for model family '${small.family}'`);
    }
    g.output(output.name, logits, 'float32', output.shape);
    presents();
    const bytes = g.encode({
      doc: `sortednet ${model.family} sub-model ${id} (standalone, BatchNorm folded), opset ${OPSET}`,
      metadata: { family: model.family, sub: id, ...opts.metadata },
    });
    return { bytes, input, output, ...(cache ? { cache } : {}), opset: OPSET, sub: id };
  } finally {
    for (const [, bn] of namedBatchNorms(small)) bn.resetStats();
    small.dispose();
  }
}
