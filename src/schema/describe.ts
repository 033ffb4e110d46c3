/** A zod error as one line a user can act on: each issue as `where: what is wrong, what is expected`. */
import { z } from 'zod';

export interface DescribeOptions {
  /** The checked value, to quote what was found and to follow unions when listing known fields. */
  json?: unknown;
  /** The schema that was checked, to list the known fields of an object with an unknown one. */
  schema?: z.ZodTypeAny;
  /**
   * `field must be …` instead of `field: must be …` (the style of the programmatic checks, e.g.
   * `resolveTrainConfig`); unknown top-level fields then read `unknown field 'x'; known fields: …`.
   */
  inline?: boolean;
}

/** Zod's issues as `path: what is wrong, what is expected`, joined by '; '. */
export function describeIssues(e: z.ZodError, o: DescribeOptions = {}): string {
  const { json, schema, inline = false } = o;
  const at = (path: (string | number)[]) => (path.length ? path.join('.') : 'the top level');
  // Where a message follows the field: `steps: must be …`, or inline `steps must be …`.
  const field = (path: (string | number)[]) =>
    inline && path.length ? `${path.join('.')} ` : `${at(path)}: `;
  return e.issues
    .map((i) => {
      switch (i.code) {
        case 'unrecognized_keys': {
          const known = schema ? fieldsAt(schema, i.path, json) : [];
          const keys = i.keys.map((k) => `'${k}'`).join(', ');
          if (inline && !i.path.length)
            return `unknown field ${keys}${known.length ? `; known fields: ${known.join(', ')}` : ''}`;
          return `${at(i.path)}: unknown field ${keys}${known.length ? `; known: ${known.join(', ')}` : ''}`;
        }
        case 'invalid_union': {
          // Neither a preset name nor a spec: the spec's own complaint when it came close, else what is expected.
          const inner = i.unionErrors
            .flatMap((u) => u.issues)
            .find((u) => u.code !== 'invalid_type' || u.path.length > i.path.length);
          if (inner) return describeIssues(new z.ZodError([inner]), o);
          return `${at(i.path)}: expected a preset name or { "family": ..., "config": {...} }`;
        }
        case 'invalid_union_discriminator':
          return `${at(i.path)}: expected one of ${i.options.map((v) => `'${String(v)}'`).join(', ')}`;
        case 'invalid_enum_value':
          return `${field(i.path)}'${String(i.received)}' is not one of ${i.options.map((v) => `'${v}'`).join(', ')}`;
        case 'invalid_type':
          // A number that is not an integer, where the schema says what it must be instead.
          if (i.expected === 'integer' && i.received === 'float' && !i.message.startsWith('Expected'))
            return `${field(i.path)}${i.message}, got ${JSON.stringify(valueAt(json, i.path))}`;
          return `${at(i.path)}: expected ${i.expected}, got ${i.received === 'undefined' ? 'nothing' : i.received}`;
        default: {
          const showsValue =
            i.code === 'custom' && (i.params as { showsValue?: boolean } | undefined)?.showsValue;
          return `${field(i.path)}${i.message}${showsValue ? '' : `, got ${JSON.stringify(valueAt(json, i.path))}`}`;
        }
      }
    })
    .join('; ');
}

function valueAt(json: unknown, path: (string | number)[]): unknown {
  return path.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], json);
}

/** The field names the schema allows at `path` (an object's), following the checked value through unions. */
function fieldsAt(schema: z.ZodTypeAny, path: (string | number)[], json: unknown): string[] {
  let t: z.ZodTypeAny | undefined = schema;
  let v = json;
  for (let depth = 0; t;) {
    if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t.unwrap() as z.ZodTypeAny;
    else if (t instanceof z.ZodDefault) t = t.removeDefault() as z.ZodTypeAny;
    else if (t instanceof z.ZodEffects) t = t.innerType() as z.ZodTypeAny;
    else if (t instanceof z.ZodDiscriminatedUnion) {
      const d = (v as Record<string, unknown> | undefined)?.[t.discriminator];
      t = t.optionsMap.get(d as string) as z.ZodTypeAny | undefined;
    } else if (t instanceof z.ZodUnion) {
      t = (t.options as z.ZodTypeAny[]).find((o) => !(o instanceof z.ZodString));
    } else if (t instanceof z.ZodObject) {
      if (depth === path.length) return Object.keys(t.shape as object);
      const k = path[depth++];
      t = (t.shape as Record<string, z.ZodTypeAny>)[k];
      v = (v as Record<string, unknown> | undefined)?.[k];
    } else return [];
  }
  return [];
}

/**
 * `value` checked by `schema`, or an Error `${where}: <issues>`; the parsed value keeps only what
 * the schema allows (a strict schema refuses the rest).
 */
export function checked<S extends z.ZodTypeAny>(
  schema: S,
  value: unknown,
  where: string,
  inline = false,
): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`${where}: ${describeIssues(r.error, { json: value, schema, inline })}`);
  return r.data as z.infer<S>;
}
