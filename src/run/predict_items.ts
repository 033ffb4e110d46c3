/**
 * What `predict` classifies: image files or CSV rows read into model inputs, each with where it came
 * from and, for a labelled CSV, the truth to report accuracy against.
 */
import type { DeployedModel, Prediction } from '../deploy/model.js';
import type { RawInput } from '../deploy/preprocess.js';
import { readImageFile } from '../data/image_file.js';
import { csvColumns, labelColumnIndex, type CsvTable } from '../data/user_data.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readRunJson } from './run_folder.js';

export interface Item {
  /** The file, or file:line of a CSV row. */
  source: string;
  input: RawInput;
  /** The CSV's label, when it has a label column. */
  truth?: string;
}

/**
 * A CSV's rows as model inputs: columns matched by name to the checkpoint's feature names when
 * both have them, else by position; the label column (named, or 'label') is kept as the truth.
 */
export function csvItems(table: CsvTable, model: DeployedModel, labelFlag: string | undefined): Item[] {
  const width = (table.header ?? table.rows[0] ?? []).length;
  const hasLabel = labelFlag !== undefined || table.header?.some((h) => h.toLowerCase() === 'label');
  const label = hasLabel ? labelColumnIndex(table, labelFlag) : -1;
  const features = model.meta.preprocess?.features;
  const size = model.inputShape.height * model.inputShape.width * model.inputShape.channels;
  let columns: number[];
  if (features && table.header) {
    columns = features.map((name) => {
      const j = table.header!.indexOf(name);
      if (j < 0) {
        throw new Error(
          `${table.path} has no column '${name}'; the model takes ${features.join(', ')} (file columns: ${table.header!.join(', ')})`,
        );
      }
      return j;
    });
  } else {
    columns = Array.from({ length: width }, (_, j) => j).filter((j) => j !== label);
    if (columns.length !== size) {
      throw new Error(
        `${table.path} has ${columns.length} feature columns, the model takes ${size}` +
          (label < 0 && columns.length === size + 1
            ? '; name the label column with --label-column NAME|INDEX'
            : ''),
      );
    }
  }
  const values = csvColumns(table, columns);
  return table.rows.map((row, r) => ({
    source: `${table.path}:${table.lines[r]}`,
    input: values.subarray(r * columns.length, (r + 1) * columns.length),
    ...(label >= 0 ? { truth: row[label] } : {}),
  }));
}

/**
 * The label column to report accuracy against: --label-column, else the column the run was trained
 * with when the file has it (said on stderr), else one named 'label'.
 */
export function labelColumnFor(run: string, table: CsvTable, flag: string | undefined): string | undefined {
  if (flag !== undefined || !table.header || !existsSync(join(run, 'run.json'))) return flag;
  const trained = readRunJson(run).data.csv?.labelColumn;
  if (typeof trained !== 'string' || trained.toLowerCase() === 'label' || !table.header.includes(trained))
    return flag;
  console.error(
    `${table.path}: reporting against its column '${trained}', the run's training label column (--label-column overrides)`,
  );
  return trained;
}

/** Truth values that are no class of the model count as wrong; say which, once. */
export function warnUnknownLabels(items: Item[], model: DeployedModel, path: string): void {
  const known = new Set([...model.classes, ...model.classes.map((_, i) => String(i))]);
  const unknown = [...new Set(items.map((it) => it.truth).filter((t) => t !== undefined && !known.has(t)))];
  if (unknown.length === 0) return;
  const shown =
    unknown.slice(0, 5).join(', ') + (unknown.length > 5 ? ` and ${unknown.length - 5} more` : '');
  console.error(
    `warning: ${path}: label value(s) ${shown} are no class of the model (${model.classes.join(', ')}); those rows count as wrong`,
  );
}

export function imageItems(files: string[]): Item[] {
  return files.map((path) => {
    const img = readImageFile(path);
    return {
      source: path,
      input: {
        width: img.width,
        height: img.height,
        channels: img.channels,
        data: img.pixels,
        ...(img.alpha ? { alpha: img.alpha } : {}),
      },
    };
  });
}

/** Whether a prediction names the truth, as a class name or as its index. */
export const correct = (p: Prediction, truth: string) => truth === p.label || truth === String(p.index);
