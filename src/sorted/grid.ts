/**
 * The grid of sub-models: the Cartesian product of per-dimension budget lists (SortedNet §1),
 * each entry with a stable id and an analytic cost. `layers` adds per-layer width choices
 * (MatFormer's Mix'n'Match: e.g. a different FFN width in each block), crossed with the rest.
 */
import { DIMENSIONS, subModelId, validateSubModelShape, type Dimension, type SubModel } from './submodel.js';
import type { Cost } from './cost.js';

export type GridSpec = Partial<Record<Dimension, number[]>> & {
  /** Per-layer output units to choose from, by elastic layer name (see the model's layer names). */
  layers?: Record<string, number[]>;
};

export interface GridEntry {
  readonly index: number;
  readonly id: string;
  readonly sub: SubModel;
  readonly cost: Cost;
}

/** What the grid needs of a model: its cost, and a check that a spec fits it. */
export interface Costed {
  cost(sub: SubModel): Cost;
  validate(sub: SubModel): void;
}

export class Grid {
  readonly entries: readonly GridEntry[];
  private readonly byId: Map<string, GridEntry>;

  constructor(
    readonly spec: GridSpec,
    model: Costed,
  ) {
    const dims = DIMENSIONS.filter((d) => spec[d] !== undefined);
    for (const d of Object.keys(spec)) {
      if (d !== 'layers' && !(DIMENSIONS as readonly string[]).includes(d)) {
        throw new Error(`grid: unknown dimension '${d}'; known: ${DIMENSIONS.join(', ')}, layers`);
      }
    }
    const checkList = (values: unknown, what: string) => {
      if (!Array.isArray(values) || values.length === 0)
        throw new Error(`grid: ${what} needs a non-empty list of budgets`);
      if (new Set(values).size !== values.length)
        throw new Error(`grid: ${what} lists a budget twice: [${values.join(', ')}]`);
    };
    for (const d of dims) checkList(spec[d], `dimension '${d}'`);
    const layerNames = Object.keys(spec.layers ?? {}).sort();
    for (const n of layerNames) checkList(spec.layers![n], `layer '${n}'`);
    let subs: SubModel[] = [{}];
    for (const d of dims) {
      const sorted = [...spec[d]!].sort((a, b) => a - b);
      subs = subs.flatMap((s) => sorted.map((v) => ({ ...s, [d]: v })));
    }
    for (const n of layerNames) {
      const sorted = [...spec.layers![n]].sort((a, b) => a - b);
      subs = subs.flatMap((s) => sorted.map((v) => ({ ...s, layers: { ...s.layers, [n]: v } })));
    }
    const checked = subs.map((s) => {
      const sub = validateSubModelShape(s, 'grid');
      model.validate(sub);
      return { sub, cost: model.cost(sub) };
    });
    // Cheapest first, so `smallest`/`largest` stay meaningful when per-layer choices are crossed in.
    if (layerNames.length) checked.sort((a, b) => a.cost.flops - b.cost.flops);
    this.entries = checked.map(({ sub, cost }, index) =>
      Object.freeze({ index, id: subModelId(sub), sub, cost }),
    );
    this.byId = new Map(this.entries.map((e) => [e.id, e]));
  }

  get size(): number {
    return this.entries.length;
  }

  /** Every dimension at its largest budget. */
  get largest(): GridEntry {
    return this.entries[this.entries.length - 1];
  }

  /** Every dimension at its smallest budget. */
  get smallest(): GridEntry {
    return this.entries[0];
  }

  /**
   * The entry that builds the same network as `sub`: by id, else by the shape `model.shrink` gives
   * (so 'full' is the entry with every dimension at its maximum, e.g. depth=6,width=1). Only specs
   * naming the grid's own dimensions match: a ResNet ignores 'heads', a request naming it is a mistake.
   */
  find(sub: SubModel, model: { shrink(sub: SubModel): unknown }): GridEntry | undefined {
    const hit = this.byId.get(subModelId(sub));
    if (hit) return hit;
    const dims = new Set(this.entries.flatMap((e) => Object.keys(e.sub)));
    if (Object.keys(sub).some((k) => !dims.has(k))) return undefined;
    const shape = JSON.stringify(model.shrink(sub));
    return this.entries.find((e) => JSON.stringify(model.shrink(e.sub)) === shape);
  }

  get(id: string): GridEntry {
    const e = this.byId.get(id);
    if (!e)
      throw new Error(`grid: no sub-model '${id}'; the grid has ${this.size}, e.g. ${this.entries[0].id}`);
    return e;
  }
}
