import * as tf from '@tensorflow/tfjs-core';
import { floatKernelIO } from './float_io.js';

/**
 * One decoding step of attention over a key/value cache kept in buffers with spare room, for the `cpu`
 * backend, and the twin of the addon's C kernel on `wasm` (src/engine/ops/cached_attention.ts holds the contract):
 *   1. writes kNew, vNew [B, kvh, n, d] IN PLACE at positions past..past+n−1 of kCache, vCache [B, kvh, C, d];
 *   2. out[b, i, j] = softmax_t(q[b, j, i]·k[b, ⌊j/g⌋, t]/√d + mask[b, t]) · v[b, ⌊j/g⌋, t] over the keys
 *      t ≤ past + i (causal), g = h / kvh query heads per key/value head; out is [B, n, h, d], the rows the
 *      output projection reads.
 * Writing in place is the point: appending by concatenation copied every layer's whole cache in every step
 * (a fifth of a batched decoding step). The op's caller owns the buffers and never reads past its length.
 */
export const CachedAttention = 'SortedNetCachedAttention';

export interface CachedAttentionAttrs {
  /** Positions already in the cache (the new ones go to past..past+n−1). */
  past: number;
}

/**
 * A call's inputs in order (q, k, v, kCache, vCache, then keyMask when given) and its dims
 * [B, h, kvh, n, d, C, past], checked; shared with the native kernel.
 */
export function cachedAttentionCall(args: Parameters<tf.KernelFunc>[0]): {
  inputs: tf.TensorInfo[];
  dims: Int32Array;
  masked: boolean;
} {
  const { q, k, v, kCache, vCache, keyMask } = args.inputs as Record<string, tf.TensorInfo>;
  const { past } = args.attrs as unknown as CachedAttentionAttrs;
  const inputs = [q, k, v, kCache, vCache, ...(keyMask ? [keyMask] : [])];
  return { inputs, dims: cachedAttentionDims(inputs, past), masked: keyMask !== undefined };
}

function cachedAttentionDims(inputs: tf.TensorInfo[], past: number): Int32Array {
  const [q, k, v, kc, vc, mask] = inputs;
  const [B, h, n, d] = q.shape;
  const kvh = k.shape[1];
  const C = kc.shape[2];
  const fail = (why: string) => {
    throw new Error(
      `${CachedAttention}: ${why} (q [${q.shape.join(', ')}], k [${k.shape.join(', ')}], cache [${kc.shape.join(', ')}], past ${past})`,
    );
  };
  if (q.shape.length !== 4 || k.shape.length !== 4 || kc.shape.length !== 4)
    fail('q, k, v and the caches must be 4-D');
  if (!tf.util.arraysEqual(k.shape, v.shape) || !tf.util.arraysEqual(kc.shape, vc.shape))
    fail('k and v, and the two caches, must have the same shapes');
  if (k.shape[0] !== B || k.shape[2] !== n || k.shape[3] !== d) fail('k must be [B, kvHeads, n, d] of q');
  if (kc.shape[0] !== B || kc.shape[1] !== kvh || kc.shape[3] !== d)
    fail('the caches must be [B, kvHeads, C, d] of k');
  if (kvh < 1 || h % kvh !== 0) fail('key/value heads must divide query heads');
  if (!Number.isInteger(past) || past < 0 || past + n > C)
    fail(`positions 0..${past + n - 1} do not fit ${C}`);
  if (mask && tf.util.sizeFromShape(mask.shape) !== B * (past + n))
    fail(`the key mask must hold [${B}, ${past + n}]`);
  return Int32Array.of(B, h, kvh, n, d, C, past);
}

function cachedAttention(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { inputs, dims, masked } = cachedAttentionCall(args);
  const [B, h, kvh, n, d, C, past] = dims;
  const { ins, outs, infos } = floatKernelIO(args.backend, CachedAttention, inputs, [[B, n, h, d]]);
  const [qs, ks, vs, kc, vc] = ins;
  const mask = masked ? ins[5] : null;
  const [out] = outs;
  // 1. The new positions into the buffers.
  for (let b = 0; b < B; b++)
    for (let j = 0; j < kvh; j++) {
      const from = (b * kvh + j) * n * d;
      const to = ((b * kvh + j) * C + past) * d;
      kc.set(ks.subarray(from, from + n * d), to);
      vc.set(vs.subarray(from, from + n * d), to);
    }
  // 2. Attention of each new query over the keys it may see.
  const g = h / kvh;
  const L = past + n;
  const scale = Math.fround(1 / Math.sqrt(d));
  const s = new Float32Array(L);
  const acc = new Float32Array(d);
  for (let b = 0; b < B; b++)
    for (let j = 0; j < h; j++) {
      const base = (b * kvh + Math.floor(j / g)) * C * d;
      for (let i = 0; i < n; i++) {
        const qo = ((b * h + j) * n + i) * d;
        const seen = past + i + 1;
        let max = -Infinity;
        for (let t = 0; t < seen; t++) {
          let dot = 0;
          const ko = base + t * d;
          for (let c = 0; c < d; c++) dot += qs[qo + c] * kc[ko + c];
          s[t] = dot * scale + (mask ? mask[b * L + t] : 0);
          if (s[t] > max) max = s[t];
        }
        let sum = 0;
        for (let t = 0; t < seen; t++) {
          s[t] = Math.exp(s[t] - max);
          sum += s[t];
        }
        acc.fill(0);
        for (let t = 0; t < seen; t++) {
          const p = s[t] / sum;
          const vo = base + t * d;
          for (let c = 0; c < d; c++) acc[c] += p * vc[vo + c];
        }
        out.set(acc, ((b * n + i) * h + j) * d);
      }
    }
  return infos[0];
}

/**
 * On `cpu` only. On `wasm` these loops read the heap through typed-array views, which V8 runs several times
 * slower than plain arrays: there they lost to concatenating and attending with the stock kernels, so on wasm
 * the op is registered by the native addon (src/engine/native/cached_attention.ts) or not at all, and decoding
 * concatenates.
 */
export const cachedAttentionConfigs: tf.KernelConfig[] = [
  { kernelName: CachedAttention, backendName: 'cpu', kernelFunc: cachedAttention },
];
