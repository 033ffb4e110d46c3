/**
 * A sub-model is a budget per elastic dimension (SortedNet §1). It uses the FIRST units of each,
 * so sub-models are nested and share one set of weights. Specs are plain immutable data and
 * travel as an argument to `forward`.
 */

export interface SubModel {
  /** Blocks (layers) run, counted from the input; the shared head follows the last one. */
  readonly depth?: number;
  /** Fraction in (0, 1] of every elastic width (channels, hidden units). */
  readonly width?: number;
  /** Attention heads (whole heads, counted). */
  readonly heads?: number;
  /** Fraction in (0, 1] of the FFN hidden width (MatFormer). */
  readonly ffn?: number;
  /** Fraction in (0, 1] of the embedding/model dimension. */
  readonly embed?: number;
  /** Fraction in (0, 1] of the MobileNetV2 expansion (hidden channels of inverted residuals). */
  readonly expand?: number;
  /** Per-layer output units by layer name; overrides `width` for that layer (non-uniform widths). */
  readonly layers?: Readonly<Record<string, number>>;
}

export const DIMENSIONS = ['depth', 'width', 'heads', 'ffn', 'embed', 'expand'] as const;
export type Dimension = (typeof DIMENSIONS)[number];
const FRACTIONS: ReadonlySet<string> = new Set(['width', 'ffn', 'embed', 'expand']);

/** The full model: every dimension at its maximum. */
export const FULL: SubModel = Object.freeze({});

/** Stable id, e.g. `depth=2,width=0.5`; the full model is `full`. Keys sorted so equal specs share an id. */
export function subModelId(sub: SubModel): string {
  const parts: string[] = [];
  for (const d of DIMENSIONS) if (sub[d] !== undefined) parts.push(`${d}=${sub[d]}`);
  if (sub.layers) {
    for (const k of Object.keys(sub.layers).sort()) parts.push(`${k}=${sub.layers[k]}`);
  }
  return parts.length ? parts.join(',') : 'full';
}

/** Parses `depth=2,width=0.5` (the CLI's and id's form). */
export function parseSubModel(text: string, where = 'sub-model'): SubModel {
  if (text.trim() === '' || text === 'full') return FULL;
  const out: Record<string, number> = {};
  const layers: Record<string, number> = {};
  for (const part of text.split(',')) {
    const m = /^\s*([\w.]+)\s*=\s*([-+0-9.eE]+)\s*$/.exec(part);
    if (!m)
      throw new Error(
        `${where}: cannot parse '${part}' in '${text}'; expected key=value pairs like depth=2,width=0.5`,
      );
    const v = Number(m[2]);
    if (!Number.isFinite(v)) throw new Error(`${where}: '${m[2]}' is not a number in '${part}'`);
    if ((DIMENSIONS as readonly string[]).includes(m[1])) out[m[1]] = v;
    else layers[m[1]] = v;
  }
  const sub: Record<string, unknown> = { ...out };
  if (Object.keys(layers).length) sub.layers = layers;
  return validateSubModelShape(sub as SubModel, where);
}

/** Checks value ranges that do not depend on a model (fractions in (0,1], positive integer counts). */
export function validateSubModelShape(sub: SubModel, where = 'sub-model'): SubModel {
  for (const d of DIMENSIONS) {
    const v = sub[d];
    if (v === undefined) continue;
    if (FRACTIONS.has(d)) {
      if (!(v > 0 && v <= 1)) throw new Error(`${where}: ${d}=${v} must be a fraction in (0, 1]`);
    } else if (!Number.isInteger(v) || v < 1) {
      throw new Error(`${where}: ${d}=${v} must be a positive integer`);
    }
  }
  for (const [k, v] of Object.entries(sub.layers ?? {})) {
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`${where}: layer '${k}' width ${v} must be a positive integer`);
  }
  return Object.freeze({ ...sub });
}
