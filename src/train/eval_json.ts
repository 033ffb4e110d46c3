/**
 * eval.json, the per-sub-model results a run's evaluation writes (EvalRow for classifiers,
 * LmEvalRow for language models): one pure parser and validator that the run folder, the server
 * and deployments all read it with. Browser-safe (no file system: callers bring the text).
 */
import { z } from 'zod';

const finite = z.number().finite();

/** What every reader relies on; the rest of a row (sub, flopsFraction, loss, …) passes through. */
export const EvalJsonRowSchema = z
  .object({
    id: z.string().min(1),
    params: finite.nonnegative(),
    flops: finite.nonnegative(),
    accuracy: finite.optional(),
    latencyMs: finite.nonnegative().optional(),
  })
  .passthrough();

export type EvalJsonRow = z.infer<typeof EvalJsonRowSchema>;

export const EvalJsonSchema = z.array(EvalJsonRowSchema);

/**
 * The rows of an eval.json text. Throws naming `where`, the row and the field when the text is
 * not JSON or a row is not an evaluated sub-model; `hint` (what to do) ends the message.
 */
export function parseEvalJson(text: string, where: string, hint?: string): EvalJsonRow[] {
  const fail = (problem: string, cause?: unknown): never => {
    throw new Error(`${where} ${problem}${hint ? `; ${hint}` : ''}`, { cause });
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail(`is not valid JSON (${(e as Error).message})`, e);
  }
  if (!Array.isArray(json)) return fail('is not a list of evaluated sub-models');
  const parsed = EvalJsonSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const [row, ...field] = issue.path;
    const name = field.length ? ` '${field.join('.')}'` : '';
    return fail(`row ${String(row)}${name}: ${issue.message}`);
  }
  return parsed.data;
}
