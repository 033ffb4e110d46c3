/**
 * The transformer as ONNX with dynamic batch and sequence axes: token + position embeddings,
 * pre-LN blocks (multi-head attention, GELU FFN), the final LayerNorm, then either the
 * classifier's masked mean pool + head or the LM's tied head (causal mask sliced to T×T).
 * Each block is written at its own heads and FFN width, so per-block (Mix'n'Match) models export.
 */
import type { Transformer } from '../../models/transformer.js';
import type { TransformerBlock } from '../../nn/transformer_block.js';
import { FeedForward } from '../../nn/ffn.js';
import type { OnnxGraph } from './graph.js';
import { gelu, layerNorm, linear } from './layers.js';

const data = (t: { dataSync(): unknown }) => t.dataSync() as Float32Array;

/** A block's cache in the graph: past keys/values in, present (past + new) out. */
export interface BlockCache {
  pastKey: string;
  pastValue: string;
  /** Filled by the exporter: the graph values to name as present.N.key / .value. */
  presentKey?: string;
  presentValue?: string;
}

function attention(
  g: OnnxGraph,
  x: string,
  block: TransformerBlock,
  mask: string | null,
  cache?: BlockCache,
): string {
  const a = block.attn;
  const heads = a.heads;
  const hd = a.headDim;
  // [N, T, h·hd] → [N, h, T, hd]
  const split = (t: string) =>
    g.op('Transpose', [g.op('Reshape', [t, g.ints('heads_shape', [0, 0, heads, hd])])], {
      perm: [0, 2, 1, 3],
    });
  const q = split(linear(g, x, a.q, false));
  let k = split(linear(g, x, a.k, false));
  let v = split(linear(g, x, a.v, false));
  if (cache) {
    // The new positions' keys and values after the cached ones (axis 2: positions).
    k = cache.presentKey = g.op('Concat', [cache.pastKey, k], { axis: 2 }, 'present_key');
    v = cache.presentValue = g.op('Concat', [cache.pastValue, v], { axis: 2 }, 'present_value');
  }
  const kT = g.op('Transpose', [k], { perm: [0, 1, 3, 2] });
  let scores = g.op(
    'MatMul',
    [g.op('Mul', [q, g.scalar('attn_scale', 1 / Math.sqrt(hd))]), kT],
    {},
    'scores',
  );
  if (mask) scores = g.op('Add', [scores, mask]);
  const o = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), v]);
  const merged = g.op('Reshape', [
    g.op('Transpose', [o], { perm: [0, 2, 1, 3] }),
    g.ints('merge_shape', [0, 0, heads * hd]),
  ]);
  return linear(g, merged, a.o, false);
}

/**
 * `ids`: int64 [N, T]; returns logits [N, classes] (classify) or [N, T, vocab] (lm). With
 * `caches` (LMs, one per block), the T tokens are positions P..P+T−1 after the P cached ones
 * (P read from the first past key): positions, causal mask and attention all account for them.
 */
export function transformerGraph(
  g: OnnxGraph,
  model: Transformer,
  ids: string,
  caches?: BlockCache[],
): string {
  const c = model.config;
  const e = c.dim;
  if (!model.positions || c.arch === 'llama')
    throw new Error(
      "onnx: LLaMA-style transformers (rotary positions, RMSNorm, SwiGLU) are not exported; use arch 'gpt'",
    );
  // Options of imported Hugging Face models that this graph does not write (yet): refused, not dropped.
  if (c.kvHeads !== undefined || model.lmHead)
    throw new Error(
      'onnx: grouped-query attention (kvHeads) and untied LM heads are not exported; GPT-2-style models are',
    );
  if (caches && (c.task !== 'lm' || caches.length !== c.layers))
    throw new Error('onnx: a KV cache is exported for language models, one per block');
  const T = g.op('Shape', [ids], { start: 1, end: 2 }, 'T'); // [T]
  // P: positions already cached (0 without a cache); the new ones are P..P+T−1.
  const P = caches ? g.op('Shape', [caches[0].pastKey], { start: 2, end: 3 }, 'P') : g.ints('zero', [0]);
  const end = caches ? g.op('Add', [P, T], {}, 'P_plus_T') : T;
  const positions = g.op('Slice', [
    g.weight('positions.weight', data(model.positions.weight), [c.maxLen, e]),
    P,
    end,
    g.ints('axis0', [0]),
  ]);
  let h = g.op('Add', [
    g.op('Gather', [g.weight('tokens.weight', data(model.tokens.weight), [c.vocab, e]), ids], { axis: 0 }),
    positions,
  ]);
  let mask: string | null = null;
  if (c.task === 'lm') {
    const full = new Float32Array(c.maxLen * c.maxLen);
    for (let i = 0; i < c.maxLen; i++) for (let j = i + 1; j < c.maxLen; j++) full[i * c.maxLen + j] = -1e9;
    // Rows P..P+T−1 (the new queries), columns 0..P+T−1 (every key): key j is hidden from
    // query i when j > i, in absolute positions.
    const starts = caches ? g.op('Concat', [P, g.ints('zero1', [0])], { axis: 0 }) : g.ints('zeros2', [0, 0]);
    const ends = g.op('Concat', [end, end], { axis: 0 });
    mask = g.op(
      'Slice',
      [g.weight('causal_mask', full, [c.maxLen, c.maxLen]), starts, ends, g.ints('axes01', [0, 1])],
      {},
      'mask',
    );
  }
  for (const [i, block] of model.blocks.items.entries()) {
    h = g.op('Add', [h, attention(g, layerNorm(g, h, block.ln1), block, mask, caches?.[i])]);
    const f = block.ffn;
    if (!(f instanceof FeedForward))
      throw new Error(`onnx: ${f.constructor.name} feed-forward layers are not exported; dense FFNs only`);
    if (f.gate) throw new Error('onnx: swiglu feed-forward layers are not exported');
    const up = gelu(g, linear(g, layerNorm(g, h, block.ln2), f.up, false));
    h = g.op('Add', [h, linear(g, up, f.down, false)]);
  }
  const hn = layerNorm(g, h, model.lnFinal);
  if (!model.head) {
    const table = model.tokens.weight;
    return g.op(
      'MatMul',
      [hn, g.weight('tokens.weightT', transposed(data(table), c.vocab, e), [e, c.vocab])],
      {},
      'lm_logits',
    );
  }
  // Mean over non-padding tokens (padId, if any), as the classifier pools.
  const keep = g.op('Not', [g.op('Equal', [ids, g.int('pad_id', c.padId ?? -1)])]);
  const m = g.op('Unsqueeze', [g.op('Cast', [keep], { to: 1 }), g.ints('axis2', [2])], {}, 'pool_mask'); // [N, T, 1]
  const sum = g.op('ReduceSum', [g.op('Mul', [hn, m]), g.ints('axis1', [1])], { keepdims: 0 });
  const count = g.op('Max', [
    g.op('ReduceSum', [m, g.ints('axis1', [1])], { keepdims: 0 }),
    g.scalar('one', 1),
  ]);
  return linear(g, g.op('Div', [sum, count], {}, 'pooled'), model.head);
}

function transposed(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) out[k * rows + r] = x[r * cols + k];
  return out;
}
