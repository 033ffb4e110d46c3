/**
 * Modules own named parameters, buffers and a `forward` (torch.nn style). Names are dotted paths
 * (`blocks.2.conv1.weight`) and stable: checkpoints are keyed by them. `stateDict()` and
 * `loadStateDict()` are the one way model state is saved, loaded, extracted and copied.
 */
import * as tf from '@tensorflow/tfjs-core';
import { prefix } from '../sorted/slice.js';
import { subModelId, type SubModel } from '../sorted/submodel.js';
import type { FoldCache } from './fold_cache.js';

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
  /**
   * Where inference keeps its folded weights (conv × BatchNorm, per sub-model; src/nn/conv_bn.ts). Without
   * it, evaluation runs each convolution and BatchNorm as they are stored.
   */
  readonly folds?: FoldCache;
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

/**
 * The context of a forward pass of `sub`: its key is the sub-model's id (`subModelId`), the one
 * name per-sub-model state goes by (BatchNorm statistics are stored as `stats.<id>.*`), so no
 * caller spells a key by hand.
 */
export function subModelContext(
  sub: SubModel,
  mode: Mode,
  more: Omit<ForwardContext, 'mode' | 'key'> = {},
): ForwardContext {
  return { ...more, mode, key: subModelId(sub) };
}

/**
 * What a state entry is: a learned parameter, a buffer (register_buffer: PAD masks, index
 * tables), or per-sub-model statistics (BatchNorm's mean, variance and batch count per sub-model,
 * named `stats.<subId>.<field>` under the module's path).
 */
export type StateKind = 'parameter' | 'buffer' | 'stats';
export const STATE_KINDS: readonly StateKind[] = ['parameter', 'buffer', 'stats'];

/** One sub-model's statistics in one module, by field (BatchNorm: mean, variance, count). */
export type SubModelStats = ReadonlyMap<string, tf.Tensor>;

export interface LoadStateOptions {
  /** The kinds of entries to load (default all); entries of other kinds are passed over. */
  kinds?: readonly StateKind[];
  /**
   * Default true: parameters or buffers the state lacks, and entries the model cannot take, are
   * an error naming them. When false they are returned (torch's missing / unexpected keys).
   * Statistics are never missing: a sub-model without them is uncalibrated, not broken.
   */
  strict?: boolean;
  /**
   * Extraction: each parameter and buffer of this (smaller) model is the prefix box of the
   * same-named source tensor (every sorted sub-model is a prefix box of the shared weights).
   */
  slice?: boolean;
  /** Statistics: take only sub-model `from`'s and store them as `to`'s (others are passed over). */
  subModel?: { from: string; to: string };
  /** Names the source in errors (a file, or the operation). */
  where?: string;
}

/** What a non-strict load left out: target names the state lacks, and state names the model cannot take. */
export interface LoadStateResult {
  missing: string[];
  unexpected: string[];
}

const STATS = 'stats.';

/** Splits a module-local `stats.<subId>.<field>` name; sub-model ids may contain dots, fields do not. */
function parseStatsName(local: string): { key: string; field: string } | null {
  const dot = local.lastIndexOf('.');
  if (!local.startsWith(STATS) || dot <= STATS.length) return null;
  return { key: local.slice(STATS.length, dot), field: local.slice(dot + 1) };
}

const shapeOf = (t: tf.Tensor) => `[${t.shape.join(', ')}]`;

const listNames = (names: string[]) =>
  names
    .slice(0, 6)
    .map((n) => `'${n}'`)
    .join(', ') + (names.length > 6 ? ` and ${names.length - 6} more` : '');

/** A state entry routed to the module that owns it: its full name and the tensor. */
type Routed = Map<string, { name: string; t: tf.Tensor }>;

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
    // State names are routed to children by their first segment.
    if (name.includes('.')) throw new Error(`child module '${name}': names must not contain '.'`);
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

  /**
   * Per-sub-model statistics this module keeps itself (not its children's): sub-model id →
   * fields. None by default; BatchNorm2d overrides this and `statsLoader`.
   */
  protected ownStats(): ReadonlyMap<string, SubModelStats> | null {
    return null;
  }

  /**
   * Checks one sub-model's statistics for this module (`where(field)` names an entry in errors)
   * and returns what stores copies of them under `key`, replacing what `key` held. Only called
   * on modules whose `ownStats()` is not null.
   */
  protected statsLoader(key: string, fields: SubModelStats, where: (field: string) => string): () => void {
    void fields;
    throw new Error(`${where('')}: ${this.constructor.name} keeps no statistics (for '${key}')`);
  }

  /**
   * Every parameter, buffer and per-sub-model statistic of the model, by dotted path, in
   * registration order (torch's state_dict). The tensors are the model's own: do not dispose
   * them; copy what must outlive the next change.
   */
  stateDict(kinds: readonly StateKind[] = STATE_KINDS, prefix = ''): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    if (kinds.includes('parameter')) for (const [n, p] of this.params) out.set(prefix + n, p);
    if (kinds.includes('buffer')) for (const [n, b] of this.buffers) out.set(prefix + n, b);
    if (kinds.includes('stats'))
      for (const [key, fields] of this.ownStats() ?? [])
        for (const [field, t] of fields) out.set(`${prefix}${STATS}${key}.${field}`, t);
    for (const [n, c] of this.children) for (const e of c.stateDict(kinds, `${prefix}${n}.`)) out.set(...e);
    return out;
  }

  /**
   * The one copier of model state (checkpoints, extraction, compaction): copies every entry of
   * `state` into the same-named parameter, buffer or statistic of this model. Everything is
   * checked (names, shapes, dtypes) before anything is written, so a failed load changes nothing.
   * The caller keeps ownership of `state`.
   */
  loadStateDict(state: ReadonlyMap<string, tf.Tensor>, opts: LoadStateOptions = {}): LoadStateResult {
    const routed: Routed = new Map([...state].map(([name, t]) => [name, { name, t }]));
    const result: LoadStateResult = { missing: [], unexpected: [] };
    const writes: (() => void)[] = [];
    this.planLoad(routed, '', { ...opts, where: opts.where ?? 'loadStateDict' }, result, writes);
    if (opts.strict ?? true) {
      const where = opts.where ?? 'loadStateDict';
      if (result.missing.length)
        throw new Error(
          `${where}: ${listNames(result.missing)} ${result.missing.length > 1 ? 'are' : 'is'} missing`,
        );
      if (result.unexpected.length)
        throw new Error(
          `${where}: ${listNames(result.unexpected)} ${result.unexpected.length > 1 ? 'match' : 'matches'} nothing in the model (another architecture?)`,
        );
    }
    for (const w of writes) w();
    return result;
  }

  /** Routes this module's entries (local names) to itself and its children; collects the writes. */
  private planLoad(
    entries: Routed,
    prefix: string,
    opts: LoadStateOptions & { where: string },
    result: LoadStateResult,
    writes: (() => void)[],
  ): void {
    const kinds = opts.kinds ?? STATE_KINDS;
    const own: Routed = new Map();
    const byChild = new Map<string, Routed>([...this.children.keys()].map((c) => [c, new Map()]));
    for (const [local, e] of entries) {
      const dot = local.indexOf('.');
      const child =
        dot > 0 && !this.params.has(local) && !this.buffers.has(local)
          ? byChild.get(local.slice(0, dot))
          : undefined;
      if (child) child.set(local.slice(dot + 1), e);
      else own.set(local, e);
    }
    for (const [kind, vars] of [
      ['parameter', this.params],
      ['buffer', this.buffers],
    ] as const) {
      for (const [n, v] of vars) {
        const e = own.get(n);
        own.delete(n);
        if (!kinds.includes(kind)) continue;
        if (!e) result.missing.push(prefix + n);
        else writes.push(copyInto(v, e.t, `${opts.where}: ${kind} '${e.name}'`, opts.slice ?? false));
      }
    }
    const stats = new Map<string, { fields: Map<string, tf.Tensor>; names: Map<string, string> }>();
    const keepsStats = this.ownStats() !== null;
    for (const [local, e] of own) {
      const s = parseStatsName(local);
      if (!s || !keepsStats) {
        result.unexpected.push(e.name);
        continue;
      }
      if (!kinds.includes('stats') || (opts.subModel && s.key !== opts.subModel.from)) continue;
      const key = opts.subModel?.to ?? s.key;
      const group = stats.get(key) ?? { fields: new Map(), names: new Map() };
      group.fields.set(s.field, e.t);
      group.names.set(s.field, e.name);
      stats.set(key, group);
    }
    for (const [key, { fields, names }] of stats)
      writes.push(
        this.statsLoader(
          key,
          fields,
          (f) => `${opts.where}: '${names.get(f) ?? `${prefix}${STATS}${key}.${f}`}'`,
        ),
      );
    for (const [n, c] of this.children) c.planLoad(byChild.get(n)!, `${prefix}${n}.`, opts, result, writes);
  }

  trainableVariables(): tf.Variable[] {
    return this.namedParameters()
      .map(([, v]) => v)
      .filter((v) => v.trainable);
  }

  parameterCount(): number {
    return this.namedParameters().reduce((s, [, v]) => s + v.size, 0);
  }

  /** Frees every tensor of the model: parameters, buffers, and what each module keeps besides them. */
  dispose(): void {
    for (const [, v] of this.namedParameters()) v.dispose();
    for (const [, v] of this.namedBuffers()) v.dispose();
    for (const [, m] of this.namedModules()) m.disposeOwn();
  }

  /**
   * The tensors this module keeps that are neither parameters nor buffers (statistics, caches); `dispose`
   * calls it on every module of the tree. Nothing by default.
   */
  protected disposeOwn(): void {}
}

/**
 * Checks that `source` fits `target` (the same shape, or with `slice` a box that holds it; the
 * same dtype) and returns the write.
 */
function copyInto(target: tf.Variable, source: tf.Tensor, where: string, slice: boolean): () => void {
  if (source.dtype !== target.dtype)
    throw new Error(`${where} is ${source.dtype}, the model's is ${target.dtype}`);
  const fits = slice
    ? source.rank === target.rank && target.shape.every((d, i) => d <= source.shape[i])
    : source.shape.join() === target.shape.join();
  if (!fits)
    throw new Error(
      `${where} has shape ${shapeOf(source)}, the model's is ${shapeOf(target)}` +
        (slice ? ' (a prefix box of the source is taken: it must be at least as large on every axis)' : ''),
    );
  return () => {
    const box = slice ? prefix(source, target.shape, where) : source;
    target.assign(box);
    if (box !== source) box.dispose(); // the variable holds its own reference to the data
  };
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
