/**
 * Modules own named parameters and a `forward` (torch.nn style). Names are dotted paths
 * (`blocks.2.conv1.weight`) and stable: checkpoints are keyed by them.
 */
import * as tf from '@tensorflow/tfjs-core';

export type Mode = 'train' | 'eval' | 'calibrate';

/**
 * What a forward pass needs besides its input. `key` names the sub-model being run, so that
 * layers with per-sub-model state (BatchNorm statistics) find theirs; it is an argument, never
 * module state, so two sub-models can be in flight at once.
 */
export interface ForwardContext {
  readonly mode: Mode;
  readonly key: string;
  /** Seeds stochastic layers (dropout, router noise); required when mode is 'train' and they are active. */
  readonly seed?: () => number;
  /** Softmax temperature of dynamic-convolution attention (default 1); annealed by the trainer. */
  readonly temperature?: number;
  /**
   * Where layers with an auxiliary loss (MoE load balancing) put it. The one channel for such
   * losses: the trainer passes a sink, adds `aux.total()` to the task loss; without a sink
   * (evaluation) the losses are dropped.
   */
  readonly aux?: AuxLosses;
}

/** Collects the auxiliary losses of one forward pass (see ForwardContext.aux). */
export class AuxLosses {
  private readonly items: tf.Scalar[] = [];
  add(loss: tf.Scalar): void {
    this.items.push(loss);
  }
  /** Their sum (0 when none were added). */
  total(): tf.Scalar {
    return this.items.length === 0 ? tf.scalar(0) : (tf.addN(this.items) as tf.Scalar);
  }
}

export const evalContext = (key: string): ForwardContext => ({ mode: 'eval', key });

export abstract class Module {
  private readonly params = new Map<string, tf.Variable>();
  private readonly buffers = new Map<string, tf.Variable>();
  private readonly children = new Map<string, Module>();

  protected addParam(name: string, init: tf.Tensor, trainable = true): tf.Variable {
    if (this.params.has(name)) throw new Error(`parameter '${name}' registered twice`);
    const v = tf.variable(init, trainable);
    init.dispose();
    this.params.set(name, v);
    return v;
  }

  /**
   * State that is not learned but saved with the weights (torch's register_buffer): PAD masks,
   * index tables of compact layers. Not in namedParameters, so no optimizer touches it.
   */
  protected addBuffer(name: string, init: tf.Tensor): tf.Variable {
    if (this.buffers.has(name) || this.params.has(name)) throw new Error(`buffer '${name}' registered twice`);
    const v = tf.variable(init, false);
    init.dispose();
    this.buffers.set(name, v);
    return v;
  }

  protected addChild<M extends Module>(name: string, m: M): M {
    if (this.children.has(name)) throw new Error(`child module '${name}' registered twice`);
    this.children.set(name, m);
    return m;
  }

  /** Every parameter with its stable dotted name, in registration order. */
  namedParameters(prefix = ''): [string, tf.Variable][] {
    const out: [string, tf.Variable][] = [];
    for (const [n, p] of this.params) out.push([prefix + n, p]);
    for (const [n, c] of this.children) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** Every buffer with its dotted name, in registration order. */
  namedBuffers(prefix = ''): [string, tf.Variable][] {
    const out: [string, tf.Variable][] = [];
    for (const [n, b] of this.buffers) out.push([prefix + n, b]);
    for (const [n, c] of this.children) out.push(...c.namedBuffers(`${prefix}${n}.`));
    return out;
  }

  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix.replace(/\.$/, ''), this]];
    for (const [n, c] of this.children) out.push(...c.namedModules(`${prefix}${n}.`));
    return out;
  }

  trainableVariables(): tf.Variable[] {
    return this.namedParameters()
      .map(([, v]) => v)
      .filter((v) => v.trainable);
  }

  parameterCount(): number {
    return this.namedParameters().reduce((s, [, v]) => s + v.size, 0);
  }

  dispose(): void {
    for (const [, v] of this.namedParameters()) v.dispose();
    for (const [, v] of this.namedBuffers()) v.dispose();
  }
}

/** An ordered list of modules named 0, 1, 2 … (torch.nn.ModuleList). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.addChild(String(i), m));
  }
  get length(): number {
    return this.items.length;
  }
}
