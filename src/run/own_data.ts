/** The train command's handling of a user's own data: CSV flags, model fit to the data, batch size. */
import type { RunData } from './run_folder.js';
import type { RunConfig } from './run_config.js';
import type { TrainConfig } from '../train/config.js';

export interface OwnDataFlags {
  labelColumn?: string;
  delimiter?: string;
}

/** The CSV options a run records in run.json (so eval and --resume read the file the same way). */
export function csvConfigFrom(flags: OwnDataFlags): RunConfig['data']['csv'] {
  if (flags.labelColumn === undefined && flags.delimiter === undefined) return undefined;
  const label = flags.labelColumn;
  return {
    ...(label !== undefined ? { labelColumn: /^-?\d+$/.test(label) ? Number(label) : label } : {}),
    ...(flags.delimiter !== undefined
      ? { delimiter: flags.delimiter === '\\t' ? '\t' : flags.delimiter }
      : {}),
  };
}

const IMAGE_FAMILIES = ['resnet', 'mobilenetv2'];

/**
 * A row of features (1×1 input) trains the `tabular` preset unless a model was named; an image
 * network named for such data is refused with the reason.
 */
export function fitModelToData(c: RunConfig, data: RunData, modelNamed: boolean): RunConfig {
  const ds = data.train;
  if (!('features' in ds) || !ds.features) return c;
  if (!modelNamed) return { ...c, model: 'tabular' };
  const family = typeof c.model === 'string' ? c.model.split('-')[0] : c.model.family;
  if (IMAGE_FAMILIES.includes(family)) {
    throw new Error(
      `model '${typeof c.model === 'string' ? c.model : family}' takes images, but ${c.data.name} is a row of ` +
        `${ds.features.length} features (${ds.features.join(', ')}); use --model tabular (or mlp)`,
    );
  }
  return c;
}

/** A batch larger than the training set is cut to its size, with a notice (not an error). */
export function clampBatchSize(tc: TrainConfig, trainCount: number): TrainConfig {
  if (tc.batchSize <= trainCount) return tc;
  console.log(`note: batch size ${tc.batchSize} > ${trainCount} training examples; using ${trainCount}`);
  return { ...tc, batchSize: trainCount };
}
