/**
 * Mixture of Experts (Shazeer et al. 2017, "Outrageously Large Neural Networks"): E experts,
 * a router per token, top-k routing, and the load-balancing loss
 *
 *   logits = x·W_g  (+ N(0,1)·softplus(x·W_noise) in training: noisy top-k gating)
 *   gates  = softmax over the top-k logits (0 elsewhere);   y = Σ_e gate_e · expert_e(x)
 *   aux    = c · (cv²(importance) + cv²(load)),  importance_e = Σ_tokens gate_e,  c = 0.01
 *
 * `load` is Shazeer's smooth estimator (the probability that expert e stays in the top-k under a
 * new noise sample) when noise is on, so it has gradients; without noise it is the token count.
 *
 * Compute: `dispatchExperts` (what the layers run) gathers each expert's tokens and runs only
 * the selected experts, k·|expert| multiply-adds per token (fewer when a capacity factor drops
 * assignments), and scatters the gated outputs back. `mixExperts` is the dense formulation (every
 * expert on every token, the gate matrix zeroing all but k): the reference the tests compare
 * against and the baseline of the benchmark.
 *
 * The aux loss reaches the trainer through `ctx.aux` (see ForwardContext); `forward` also
 * returns it, for inspection.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, type ForwardContext } from '../nn/module.js';
import { Linear } from '../nn/linear.js';
import { FeedForward } from '../nn/ffn.js';
import { activate, type Activation } from '../nn/functional.js';
import { uniformFanIn } from '../nn/init.js';
import type { Cost } from '../sorted/cost.js';

export interface MoEOptions {
  /** E, the number of experts. Default 8. */
  experts?: number;
  /** k, experts per token. Default 2. */
  topK?: number;
  /** Hidden width of FFN experts (in → hidden → out); omit for linear experts (in → out). */
  hidden?: number;
  /** Activation of FFN experts. Default 'gelu'. */
  activation?: Activation;
  /** Shazeer's trainable gating noise in 'train' mode. Default true. */
  noisyGating?: boolean;
  /** Tokens per expert ≤ ⌈capacityFactor·k·N/E⌉; later tokens of a full expert lose that gate. Default: no limit. */
  capacityFactor?: number;
  /** c of the load-balancing loss. Default 0.01. */
  auxWeight?: number;
  name?: string;
}

export interface MoEOutput {
  /** Same shape as the input but the last axis: [..., out]. */
  y: tf.Tensor;
  /** Scalar c·(cv²(importance) + cv²(load)); add it to the task loss. */
  auxLoss: tf.Scalar;
  /** Clean router logits x·W_g, [N, E] with N the number of tokens (input flattened). */
  routerLogits: tf.Tensor2D;
}

export interface Routing {
  /** [N, E]: softmax over each token's top-k logits, 0 for the other experts. */
  gates: tf.Tensor2D;
  auxLoss: tf.Scalar;
  routerLogits: tf.Tensor2D;
}

/** One layer of every expert, stacked: weight [E, out, in] (nn/Linear's [out, in] per expert), bias [E, out]. */
export interface ExpertLayer {
  weight: tf.Tensor3D;
  bias: tf.Tensor2D;
}

/** The stacked weights of one layer of all E experts. */
export class StackedLinear extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;
  constructor(
    readonly experts: number,
    readonly inFeatures: number,
    readonly outFeatures: number,
    seed: () => number,
  ) {
    super();
    this.weight = this.addParam(
      'weight',
      uniformFanIn([experts, outFeatures, inFeatures], inFeatures, seed()),
    );
    this.bias = this.addParam('bias', uniformFanIn([experts, outFeatures], inFeatures, seed()));
  }
  asLayer(): ExpertLayer {
    return { weight: this.weight as tf.Tensor3D, bias: this.bias as tf.Tensor2D };
  }
}

/** Squared coefficient of variation, var/mean², of a vector (0 for equal entries). */
export function cvSquared(v: tf.Tensor1D): tf.Scalar {
  const { mean, variance } = tf.moments(v);
  return tf.div(variance, tf.add(tf.square(mean), 1e-10)) as tf.Scalar;
}

/** Standard normal CDF Φ. */
function normalCdf(z: tf.Tensor): tf.Tensor {
  return tf.mul(0.5, tf.add(1, tf.erf(tf.div(z, Math.SQRT2))));
}

/** [N, k] int indices → [N, E] float 0/1. */
function indicesToMask(indices: tf.Tensor, experts: number): tf.Tensor2D {
  return tf.cast(
    tf.sum(tf.oneHot(tf.cast(indices, 'int32') as tf.Tensor2D, experts), 1),
    'float32',
  ) as tf.Tensor2D; // [N, k, E] → [N, E]
}

interface RoutingMasks {
  /** 1 on each token's top-k experts. */
  top: tf.Tensor2D;
  /** `top` without the assignments over capacity. */
  routed: tf.Tensor2D;
  /** One-hot of each token's k-th and (k+1)-th largest logit (the thresholds of the load estimator). */
  kth: tf.Tensor2D;
  next: tf.Tensor2D;
}

/**
 * The discrete part of routing, [N, E] 0/1 masks, as constants for autodiff: tfjs has no gradient
 * for TopK or comparisons, and the masks are piecewise constant in the logits anyway, so one
 * custom-gradient op returns them with a zero gradient. Gradients reach the router through the
 * softmax over the masked logits and through the load estimator's Φ.
 */
function routingMasks(logits: tf.Tensor2D, k: number, capacity: number | null): RoutingMasks {
  const [N, E] = logits.shape;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const l = args[0] as tf.Tensor2D;
    const { indices } = tf.topk(l, Math.min(k + 1, E)); // [N, k or k+1]
    const top = indicesToMask(tf.slice(indices, [0, 0], [N, k]), E);
    let routed = top;
    if (capacity !== null) {
      // An expert takes at most `capacity` tokens, first come first served in token order (GShard).
      const position = tf.cumsum(top, 0); // 1-based place of each token in its experts' queues
      routed = tf.mul(top, tf.cast(tf.lessEqual(position, capacity), 'float32'));
    }
    const kth = indicesToMask(tf.slice(indices, [0, k - 1], [N, 1]), E);
    const next = k < E ? indicesToMask(tf.slice(indices, [0, k], [N, 1]), E) : tf.zerosLike(top);
    return { value: tf.stack([top, routed, kth, next]), gradFunc: () => tf.zerosLike(l) }; // [4, N, E]
  });
  const masks = op(logits);
  const part = (i: number) => tf.reshape(tf.slice(masks, [i, 0, 0], [1, N, E]), [N, E]) as tf.Tensor2D;
  return { top: part(0), routed: part(1), kth: part(2), next: part(3) };
}

/** Noisy top-k router (Shazeer et al. 2017, §2.1). W_g and W_noise start at 0, as in the paper. */
export class Router extends Module {
  readonly gate: tf.Variable;
  readonly noise: tf.Variable | null;
  constructor(
    readonly inFeatures: number,
    readonly experts: number,
    readonly topK: number,
    readonly opts: { noisyGating: boolean; capacityFactor?: number; auxWeight: number; name: string },
  ) {
    super();
    this.gate = this.addParam('gate', tf.zeros([inFeatures, experts])); // W_g: [in, E]
    this.noise = opts.noisyGating ? this.addParam('noise', tf.zeros([inFeatures, experts])) : null;
  }

  /** x: [N, in] → gates [N, E], aux loss, clean logits. */
  forward(x: tf.Tensor2D, ctx: ForwardContext): Routing {
    const E = this.experts;
    const k = this.topK;
    const N = x.shape[0];
    const clean = tf.matMul(x, this.gate) as tf.Tensor2D; // [N, E]
    let logits: tf.Tensor2D = clean;
    let noiseStd: tf.Tensor2D | null = null;
    if (this.noise && ctx.mode === 'train') {
      if (!ctx.seed) throw new Error(`${this.opts.name}: noisy gating in train mode needs ctx.seed`);
      noiseStd = tf.add(tf.softplus(tf.matMul(x, this.noise)), 1e-2) as tf.Tensor2D;
      logits = tf.add<tf.Tensor2D>(
        clean,
        tf.mul(tf.randomNormal([N, E], 0, 1, 'float32', ctx.seed()), noiseStd),
      );
    }
    const capacity =
      this.opts.capacityFactor === undefined ? null : Math.ceil((this.opts.capacityFactor * k * N) / E);
    const { top, routed, kth, next } = routingMasks(logits, k, capacity);
    // Softmax over the masked logits is the softmax over the top-k, differentiable in the logits.
    let gates = tf.softmax(tf.add(logits, tf.mul(tf.sub(1, top), -1e9))) as tf.Tensor2D;
    if (capacity !== null) gates = tf.mul(gates, routed);
    const importance = tf.sum(gates, 0) as tf.Tensor1D;
    let load: tf.Tensor1D;
    if (noiseStd && k < E) {
      // P(token keeps e in its top-k under fresh noise on e): the clean logit against the k-th
      // largest noisy logit of the OTHER experts, i.e. the (k+1)-th if e is in, the k-th if out.
      const thresholdIfIn = tf.sum(tf.mul(logits, next), 1, true); // [N, 1]
      const thresholdIfOut = tf.sum(tf.mul(logits, kth), 1, true);
      const probIn = normalCdf(tf.div(tf.sub(clean, thresholdIfIn), noiseStd));
      const probOut = normalCdf(tf.div(tf.sub(clean, thresholdIfOut), noiseStd));
      load = tf.sum(tf.add(tf.mul(top, probIn), tf.mul(tf.sub(1, top), probOut)), 0) as tf.Tensor1D;
    } else {
      load = tf.sum(routed, 0) as tf.Tensor1D;
    }
    const auxLoss = tf.mul(this.opts.auxWeight, tf.add(cvSquared(importance), cvSquared(load))) as tf.Scalar;
    return { gates, auxLoss, routerLogits: clean };
  }
}

/**
 * Σ_e gate_e · expert_e(x) for experts given as stacked layers (1 layer: linear experts, 2: FFN
 * experts), plus optional SHARED weights per layer (PAD-MoE's static part, [out, in]) that every
 * expert adds to its own: because a shared weight is the same for all experts it costs one
 * matMul per token, not E.
 *  x [N, in], gates [N, E] → [N, out].
 */
export function mixExperts(
  x: tf.Tensor2D,
  gates: tf.Tensor2D,
  layers: readonly ExpertLayer[],
  activation: Activation,
  shared: readonly (tf.Tensor2D | null)[] = [],
): tf.Tensor2D {
  const N = x.shape[0];
  const E = gates.shape[1];
  const g = tf.reshape(gates, [N, E, 1]);
  const first = layers[0];
  const [, out0, in0] = first.weight.shape;
  // Every expert's first layer at once: [N, in] × [E·out, in]ᵀ → [N, E, out].
  let h: tf.Tensor = tf.reshape(tf.matMul(x, tf.reshape(first.weight, [E * out0, in0]), false, true), [
    N,
    E,
    out0,
  ]);
  h = tf.add(h, first.bias);
  if (shared[0]) h = tf.add(h, tf.reshape(tf.matMul(x, shared[0], false, true), [N, 1, out0]));
  if (layers.length === 1) return tf.sum(tf.mul(h, g), 1) as tf.Tensor2D; // [N, out]
  if (layers.length !== 2) throw new Error(`mixExperts: experts have 1 or 2 layers, got ${layers.length}`);

  const second = layers[1];
  const [, out1, in1] = second.weight.shape;
  const gh = tf.mul(activate(h, activation), g); // [N, E, hidden], gate folded in
  // Σ_e (g_e h_e) W_eᵀ as ONE matMul: [N, E·hidden] × [E·hidden, out].
  const down = tf.reshape(tf.transpose(second.weight, [0, 2, 1]), [E * in1, out1]);
  let y = tf.matMul(tf.reshape(gh, [N, E * in1]), down);
  y = tf.add(y, tf.matMul(gates, second.bias)); // Σ_e g_e b_e
  if (shared[1]) y = tf.add(y, tf.matMul(tf.sum(gh, 1) as tf.Tensor2D, shared[1], false, true));
  return y as tf.Tensor2D;
}

/** For each expert, the tokens routed to it (a non-zero gate): the only (token, expert) pairs dispatchExperts computes. */
export function expertTokens(gates: tf.Tensor2D): number[][] {
  const [N, E] = gates.shape;
  const g = gates.dataSync();
  const tokens: number[][] = Array.from({ length: E }, () => []);
  for (let n = 0; n < N; n++) for (let e = 0; e < E; e++) if (g[n * E + e] !== 0) tokens[e].push(n);
  return tokens;
}

/**
 * Σ_e gate_e · expert_e(x) computing only the selected experts: for each expert, the tokens whose
 * gate is non-zero (top-k, and within capacity) are gathered, run through that expert's weights,
 * weighted by their gates and summed back per token (unsortedSegmentSum). Shared weights
 * (PAD-MoE's static part) run once per token. Equal to `mixExperts` (tested); gradients flow
 * through the gathers to the gates, the tokens and the selected experts' weights.
 *  x [N, in], gates [N, E] → [N, out].
 */
export function dispatchExperts(
  x: tf.Tensor2D,
  gates: tf.Tensor2D,
  layers: readonly ExpertLayer[],
  activation: Activation,
  shared: readonly (tf.Tensor2D | null)[] = [],
): tf.Tensor2D {
  if (layers.length !== 1 && layers.length !== 2)
    throw new Error(`dispatchExperts: experts have 1 or 2 layers, got ${layers.length}`);
  const [N, E] = gates.shape;
  const tokens = expertTokens(gates);
  const first = layers[0];
  const last = layers[layers.length - 1];
  const [, out0, in0] = first.weight.shape;
  const outF = last.weight.shape[1];
  const staticIn = shared[0] ? tf.matMul(x, shared[0], false, true) : null; // [N, out0], once per token
  const outs: tf.Tensor2D[] = [];
  const gated: tf.Tensor2D[] = []; // g·act(h) per expert, for the shared second layer
  const owners: number[] = [];
  for (let e = 0; e < E; e++) {
    if (tokens[e].length === 0) continue;
    const n = tokens[e].length;
    const idx = tf.tensor1d(tokens[e], 'int32');
    const ge = tf.gather(tf.slice(gates, [0, e], [N, 1]), idx); // [n, 1]
    const w0 = tf.reshape(tf.slice(first.weight, [e, 0, 0], [1, out0, in0]), [out0, in0]);
    let h: tf.Tensor2D = tf.add(
      tf.matMul(tf.gather(x, idx), w0, false, true),
      tf.slice(first.bias, [e, 0], [1, out0]),
    );
    if (staticIn) h = tf.add(h, tf.gather(staticIn, idx));
    if (layers.length === 1) outs.push(tf.mul(h, ge));
    else {
      const [, out1, in1] = last.weight.shape;
      const gh = tf.mul(activate(h, activation), ge) as tf.Tensor2D; // gate folded in
      const w1 = tf.reshape(tf.slice(last.weight, [e, 0, 0], [1, out1, in1]), [out1, in1]);
      outs.push(tf.add(tf.matMul(gh, w1, false, true), tf.mul(ge, tf.slice(last.bias, [e, 0], [1, out1]))));
      gated.push(gh);
    }
    for (let i = 0; i < n; i++) owners.push(tokens[e][i]);
  }
  if (outs.length === 0) return tf.zeros([N, outF]); // every assignment dropped (capacity)
  const segments = tf.tensor1d(owners, 'int32');
  let y = tf.unsortedSegmentSum(tf.concat(outs, 0), segments, N) as tf.Tensor2D;
  if (shared[1] && gated.length) {
    const gh = tf.unsortedSegmentSum(tf.concat(gated, 0), segments, N) as tf.Tensor2D; // Σ_e g_e act(h_e)
    y = tf.add(y, tf.matMul(gh, shared[1], false, true));
  }
  return y;
}

/** MoE experts have one width: a block asking for fewer hidden units is refused, not silently widened. */
export function checkFullWidth(name: string, hidden: number, full: number): void {
  if (hidden !== full)
    throw new Error(
      `${name}: experts have a fixed hidden width ${full}, asked for ${hidden} (MoE FFNs are not elastic)`,
    );
}

/**
 * A MoE layer. `routed` returns `{ y, auxLoss, routerLogits }` to observe the routing; `forward`
 * returns y alone (a transformer block's FFN), the aux loss reaching the trainer through ctx.aux.
 *
 * ```ts
 * const moe = new MoE(64, 64, seedStream(1), { experts: 8, topK: 2, hidden: 128 });
 * const { y, auxLoss } = moe.routed(x, subModelContext(FULL, 'train', { seed: seedStream(2) }));
 * ```
 */
export class MoE extends Module {
  readonly router: Router;
  /** One StackedLinear per expert layer: ['expert'] for linear experts, ['up', 'down'] for FFN experts. */
  readonly layers: StackedLinear[];
  readonly experts: number;
  readonly topK: number;
  readonly hidden: number | null;
  readonly activation: Activation;
  readonly name: string;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    seed: () => number,
    opts: MoEOptions = {},
  ) {
    super();
    this.name = opts.name ?? 'moe';
    this.experts = opts.experts ?? 8;
    this.topK = opts.topK ?? 2;
    this.hidden = opts.hidden ?? null;
    this.activation = opts.activation ?? 'gelu';
    const E = this.experts;
    if (!Number.isInteger(E) || E < 1)
      throw new Error(`${this.name}: experts ${E} must be a positive integer`);
    if (!Number.isInteger(this.topK) || this.topK < 1 || this.topK > E) {
      throw new Error(
        `${this.name}: topK ${this.topK} must be an integer in 1..${E} (the number of experts)`,
      );
    }
    if (opts.capacityFactor !== undefined && !(opts.capacityFactor > 0)) {
      throw new Error(`${this.name}: capacityFactor ${opts.capacityFactor} must be > 0`);
    }
    this.router = this.addChild(
      'router',
      new Router(inFeatures, E, this.topK, {
        noisyGating: opts.noisyGating ?? true,
        capacityFactor: opts.capacityFactor,
        auxWeight: opts.auxWeight ?? 0.01,
        name: `${this.name}.router`,
      }),
    );
    this.layers =
      this.hidden === null
        ? [this.addChild('expert', new StackedLinear(E, inFeatures, outFeatures, seed))]
        : [
            this.addChild('up', new StackedLinear(E, inFeatures, this.hidden, seed)),
            this.addChild('down', new StackedLinear(E, this.hidden, outFeatures, seed)),
          ];
  }

  /** Flattens x [..., in] to [N, in] with a clear error on the wrong width. */
  tokens(x: tf.Tensor): tf.Tensor2D {
    const d = x.shape[x.rank - 1];
    if (x.rank < 2 || d !== this.inFeatures) {
      throw new Error(`${this.name}: input must be [..., ${this.inFeatures}], got [${x.shape.join(', ')}]`);
    }
    return tf.reshape(x, [-1, d]);
  }

  unflatten(y: tf.Tensor2D, like: tf.Tensor): tf.Tensor {
    return like.rank === 2 ? y : tf.reshape(y, [...like.shape.slice(0, -1), this.outFeatures]);
  }

  /** A block's FFN (BlockFfn): x [..., in] → y [..., out] at the experts' full width; aux loss to ctx.aux. */
  forward(x: tf.Tensor, hidden: number, ctx: ForwardContext): tf.Tensor {
    checkFullWidth(this.name, hidden, this.hidden ?? this.outFeatures);
    return this.routed(x, ctx).y;
  }

  /** x [..., in] → y [..., out] with the routing; the aux loss goes to ctx.aux (and is returned). */
  routed(x: tf.Tensor, ctx: ForwardContext): MoEOutput {
    const tokens = this.tokens(x);
    const { gates, auxLoss, routerLogits } = this.router.forward(tokens, ctx);
    ctx.aux?.add(auxLoss);
    const y = dispatchExperts(
      tokens,
      gates,
      this.layers.map((l) => l.asLayer()),
      this.activation,
    );
    return { y: this.unflatten(y, x), auxLoss, routerLogits };
  }

  /** Copies a dense Linear (linear experts) or FeedForward (FFN experts) into every expert (sparse upcycling). */
  upcycle(dense: Linear | FeedForward): void {
    const source: Linear[] = dense instanceof Linear ? [dense] : [dense.up, dense.down];
    if (dense instanceof FeedForward) {
      if (dense.gate)
        throw new Error(`${this.name}: cannot upcycle a SwiGLU FeedForward into GELU/ReLU experts`);
      if (dense.activation !== this.activation) {
        throw new Error(
          `${this.name}: dense FFN uses '${dense.activation}', experts use '${this.activation}'`,
        );
      }
    }
    if (source.length !== this.layers.length) {
      throw new Error(
        `${this.name}: experts have ${this.layers.length} layer(s), the dense module has ${source.length}; ` +
          `use ${this.layers.length === 1 ? 'a Linear' : 'a FeedForward'}`,
      );
    }
    source.forEach((lin, i) => {
      const target = this.layers[i];
      const want = [target.outFeatures, target.inFeatures];
      if (lin.weight.shape[0] !== want[0] || lin.weight.shape[1] !== want[1]) {
        throw new Error(
          `${this.name}: dense weight [${lin.weight.shape.join(', ')}] != expert weight [${want.join(', ')}]`,
        );
      }
      tf.tidy(() => {
        target.weight.assign(tf.tile(tf.expandDims(lin.weight, 0), [this.experts, 1, 1]));
        const b = lin.bias ?? tf.zeros([target.outFeatures]);
        target.bias.assign(tf.tile(tf.expandDims(b, 0), [this.experts, 1]));
      });
    });
  }

  /** Elements of ONE expert's weights, per layer. */
  expertWeightSizes(): number[] {
    return this.layers.map((l) => l.inFeatures * l.outFeatures);
  }

  /** Parameters, and the FLOPs per token of an ideal top-k dispatch (see the file comment). */
  cost(): Cost {
    const E = this.experts;
    const weights = this.expertWeightSizes().reduce((a, b) => a + b, 0);
    const biases = this.layers.reduce((a, l) => a + l.outFeatures, 0);
    const router = this.router.parameterCount();
    return {
      params: E * (weights + biases) + router,
      flops: 2 * this.inFeatures * E + this.topK * (2 * weights + biases),
    };
  }
}
