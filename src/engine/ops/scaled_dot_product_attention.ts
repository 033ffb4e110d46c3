import * as tf from '@tensorflow/tfjs-core';

/**
 * softmax(q·kᵀ/√d + mask)·v over the last two axes, with its gradient written out:
 *   p = softmax(s),  o = p·v,
 *   dv = pᵀ·do,  dp = do·vᵀ,  ds = p ⊙ (dp − Σⱼ dp ⊙ p),  dq = ds·k/√d,  dk = dsᵀ·q/√d.
 * q, k, v: [B, h, T, d]; `causal` masks position j > i. Why: autodiff through the composite records
 * every scale, mask and softmax step on the tape; this form is four matmuls and a few elementwise ops
 * each way, which matters on the overhead-bound small shapes of sorted sub-models.
 *
 * ```ts
 * const o = scaledDotProductAttention(q, k, v, { causal: true }); // [B, h, T, d]
 * ```
 */
export function scaledDotProductAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  opts: { causal?: boolean } = {},
): tf.Tensor4D {
  const [B, h, T, d] = q.shape;
  const same = (t: tf.Tensor4D) => t.shape[0] === B && t.shape[1] === h && t.shape[3] === d;
  if (!same(k) || !same(v) || k.shape[2] !== v.shape[2]) {
    throw new Error(
      `scaledDotProductAttention: q [${q.shape}], k [${k.shape}], v [${v.shape}] must agree on batch, heads and head size, and k, v on length`,
    );
  }
  if (opts.causal && k.shape[2] !== T) {
    throw new Error(
      `scaledDotProductAttention: causal attention needs as many keys as queries (${k.shape[2]} vs ${T})`,
    );
  }
  const scale = 1 / Math.sqrt(d);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qi, ki, vi] = args as tf.Tensor4D[];
    const save = args[3] as tf.GradSaveFunc;
    let s = tf.matMul(tf.mul(qi, scale), ki, false, true);
    if (opts.causal) s = tf.add(s, causalMask(T));
    const p = tf.softmax(s);
    save([qi, ki, vi, p]);
    return {
      value: tf.matMul(p, vi),
      gradFunc: (dO: tf.Tensor, saved: tf.Tensor[]) => {
        const [qs, ks, vs, ps] = saved;
        const dv = tf.matMul(ps, dO, true, false);
        const dp = tf.matMul(dO, vs, false, true);
        const ds = tf.mul(ps, tf.sub(dp, tf.sum(tf.mul(dp, ps), -1, true)));
        const dq = tf.mul(tf.matMul(ds, ks), scale);
        const dk = tf.matMul(tf.mul(ds, scale), qs, true, false);
        return [dq, dk, dv];
      },
    };
  });
  return op(q, k, v) as tf.Tensor4D;
}

const masks = new Map<number, tf.Tensor2D>();

/**
 * [T, T] additive mask: 0 on and below the diagonal, −1e9 above. Built once per length and kept:
 * tfjs builds a band matrix from broadcasting comparisons, slow on wasm, and it never changes.
 */
export function causalMask(T: number): tf.Tensor2D {
  let m = masks.get(T);
  if (!m || m.isDisposed) {
    m = tf.tidy(() => {
      const lower = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
      return tf.keep(tf.mul(tf.sub(1, lower), -1e9) as tf.Tensor2D);
    });
    masks.set(T, m);
  }
  return m;
}
