/**
 * `--init-from`: a new run that starts from the weights of an existing run or checkpoint folder
 * (one written by `sortednet import`, or any trained run) instead of random initialisation: sorted
 * fine-tuning (SoFT) of a pre-trained model. Weights and buffers are copied whole; of the BatchNorm
 * statistics only the full model's come along (they were measured on the pre-trained network),
 * every sub-model calibrates its own, as after any training. Every tensor is accounted for: names
 * the source lacks, names the model has no place for and shapes that differ are one error that
 * lists them. The optimizer starts fresh: a new run, step 0.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadCheckpoint, type CheckpointMeta } from '../io/checkpoint.js';
import type { SortedModel } from '../models/model.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import { FULL, subModelId } from '../sorted/submodel.js';

export interface InitSource {
  /** The source model, built from its checkpoint's own spec (the caller disposes it). */
  model: SortedModel;
  meta: CheckpointMeta;
  /** The checkpoint folder the weights came from. */
  dir: string;
  /** Verified files saved beside the weights (an LM's tokenizer.json). */
  extraFiles: Map<string, Uint8Array>;
}

/** The latest checkpoint of a run folder, or a checkpoint folder itself (a step folder). */
export async function readInitSource(path: string): Promise<InitSource> {
  if (!existsSync(path))
    throw new Error(
      `--init-from ${path}: no such folder; give a run folder (one 'sortednet train' or 'sortednet import' wrote) or a checkpoint folder`,
    );
  const r = await loadCheckpoint(path, undefined, { calibrated: false, skipOptimizer: true });
  return { model: r.model, meta: r.meta, dir: r.dir, extraFiles: r.extraFiles };
}

const listed = (names: string[]) => {
  const shown = names.slice(0, 12).map((n) => `'${n}'`);
  return shown.join(', ') + (names.length > 12 ? ` and ${names.length - 12} more` : '');
};

/**
 * Copies `source`'s weights and buffers into `target` (the same architecture) and its full
 * model's BatchNorm statistics; the target's other statistics are dropped. Checks everything
 * before writing anything: missing, extra and mis-shaped tensors are one error naming them.
 */
export function copyInitWeights(target: SortedModel, source: SortedModel, where: string): void {
  const kinds = ['parameter', 'buffer'] as const;
  const want = target.stateDict(kinds);
  const have = source.stateDict(kinds);
  const missing = [...want.keys()].filter((n) => !have.has(n));
  const extra = [...have.keys()].filter((n) => !want.has(n));
  const shapes = [...want]
    .filter(([n, t]) => have.has(n) && have.get(n)!.shape.join() !== t.shape.join())
    .map(([n, t]) => `'${n}' is [${have.get(n)!.shape.join(', ')}] there, [${t.shape.join(', ')}] here`);
  const problems: string[] = [];
  if (missing.length)
    problems.push(`${missing.length} tensor(s) the model needs are missing: ${listed(missing)}`);
  if (extra.length) problems.push(`${extra.length} tensor(s) have no place in the model: ${listed(extra)}`);
  if (shapes.length) problems.push(`shapes differ: ${shapes.slice(0, 12).join('; ')}`);
  if (problems.length)
    throw new Error(
      `--init-from ${where}: the weights do not fit the model (${target.family} here, ${source.family} there): ${problems.join('; ')}`,
    );
  target.loadStateDict(have, { kinds, where });
  for (const [, m] of namedBatchNorms(target)) m.resetStats();
  const full = subModelId(FULL);
  target.loadStateDict(source.stateDict(['stats']), {
    kinds: ['stats'],
    subModel: { from: full, to: full },
    where,
  });
}

/** What run.json records of the source: the folder given, the checkpoint read, its step. */
export interface InitFromRecord {
  from: string;
  checkpoint: string;
  step: number;
}

export function initRecord(given: string, s: InitSource): InitFromRecord {
  return { from: resolve(given), checkpoint: resolve(s.dir), step: s.meta.step };
}
