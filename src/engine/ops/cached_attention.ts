import * as tf from '@tensorflow/tfjs-core';
import { CachedAttention, type CachedAttentionAttrs } from '../kernels/cached_attention.js';

/** Key and value buffers [B, kvHeads, capacity, d] of one attention layer's cache. */
export interface KvBuffers {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** Whether the current backend can decode into cache buffers in place (cpu, and wasm with the native addon). */
export function cachedAttentionAvailable(): boolean {
  return tf.getKernel(CachedAttention, tf.getBackend()) !== undefined;
}

/**
 * Attention of n new positions over a key/value cache, appending them to it IN PLACE: kNew, vNew
 * [B, kvh, n, d] are written at positions past..past+n−1 of `cache` (whose third axis is its capacity),
 * then each query q [B, h, n, d] attends to the keys 0..past+i it may see, with the additive `keyMask`
 * ([B, 1, 1, past + n], e.g. a batch's left padding) on top. Query head j reads key/value head ⌊j·kvh/h⌋
 * (grouped-query attention). Returns [B, n, h, d]. Inference only (no gradient); positions of the
 * buffers past `past + n` are never read, so a caller rolls back by remembering a smaller length.
 *
 * ```ts
 * const cache = { k: tf.zeros([1, 2, 64, 16]), v: tf.zeros([1, 2, 64, 16]) };
 * const y = cachedAttention(q, k, v, cache, 0); // prefill: n positions at 0..n−1
 * ```
 */
export function cachedAttention(
  q: tf.Tensor4D,
  kNew: tf.Tensor4D,
  vNew: tf.Tensor4D,
  cache: KvBuffers,
  past: number,
  keyMask?: tf.Tensor,
): tf.Tensor4D {
  if (!cachedAttentionAvailable())
    throw new Error(
      `cachedAttention: backend '${tf.getBackend()}' has no ${CachedAttention} kernel; decode by concatenating the cache instead`,
    );
  const attrs: CachedAttentionAttrs = { past };
  const inputs: tf.NamedTensorMap = { q, k: kNew, v: vNew, kCache: cache.k, vCache: cache.v };
  if (keyMask) inputs.keyMask = keyMask;
  return tf.engine().runKernel(CachedAttention, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}
