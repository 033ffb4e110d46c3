/** `sortednet predict`: class and probabilities of images or CSV rows, from a trained run, any sub-model. */
import { parseBackend } from '../../engine/backend.js';
import { loadModel } from '../../deploy/load_node.js';
import type { DeployedModel, PredictOptions, Prediction } from '../../deploy/model.js';
import type { RawInput } from '../../deploy/preprocess.js';
import { readImageFile } from '../../data/image_file.js';
import { csvColumns, labelColumnIndex, readCsvTable, type CsvTable } from '../../data/user_data.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { need, numArg } from '../args.js';
import { readRunJson } from '../../run/run_folder.js';
import type { RegisterCommand } from '../command.js';
import { resolveSubRun } from '../../run/individual.js';

interface PredictFlags {
  run?: string;
  input?: string[];
  csv?: string;
  labelColumn?: string;
  delimiter?: string;
  sub?: string;
  maxFlops?: number;
  maxParams?: number;
  maxLatencyMs?: number;
  json?: boolean;
  backend?: string;
  matchPolarity?: boolean;
}

interface Item {
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
function csvItems(table: CsvTable, model: DeployedModel, labelFlag: string | undefined): Item[] {
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
function labelColumnFor(run: string, table: CsvTable, flag: string | undefined): string | undefined {
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
function warnUnknownLabels(items: Item[], model: DeployedModel, path: string): void {
  const known = new Set([...model.classes, ...model.classes.map((_, i) => String(i))]);
  const unknown = [...new Set(items.map((it) => it.truth).filter((t) => t !== undefined && !known.has(t)))];
  if (unknown.length === 0) return;
  const shown =
    unknown.slice(0, 5).join(', ') + (unknown.length > 5 ? ` and ${unknown.length - 5} more` : '');
  console.error(
    `warning: ${path}: label value(s) ${shown} are no class of the model (${model.classes.join(', ')}); those rows count as wrong`,
  );
}

function imageItems(files: string[]): Item[] {
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

const correct = (p: Prediction, truth: string) => truth === p.label || truth === String(p.index);

export const registerPredict: RegisterCommand = (program, exit) => {
  program
    .command('predict')
    .description('classify images or CSV rows with a trained run: labels and probabilities, any sub-model')
    .option('--run <dir>', 'the run folder (or a checkpoint folder, or a .tar of either)')
    .option('--input <files...>', 'image files: PNG, JPEG, PGM or PPM, resized to the model')
    .option('--csv <file>', 'a CSV of feature rows (a label column, if any, is reported against)')
    .option('--label-column <name|index>', "the CSV's label column (default: one named 'label', if any)")
    .option('--delimiter <char>', "the CSV's field delimiter (default: sniffed)")
    .option('--sub <spec>', 'the sub-model, e.g. depth=2,width=0.5 (default: the largest)')
    .option('--max-flops <x>', 'the best sub-model within this many FLOPs per example', numArg)
    .option('--max-params <n>', 'the best sub-model within this many parameters', numArg)
    .option('--max-latency-ms <t>', 'the best sub-model within this latency (from eval)', numArg)
    .option('--json', 'print JSON (one object per input)')
    .option(
      '--no-match-polarity',
      'keep images as they are: by default one whose background has the opposite tone of the training images (dark on white for MNIST) is inverted, with a notice',
    )
    .option('--backend <name>', 'wasm (default), cpu or webgpu')
    .action(async (flags: PredictFlags) => {
      // An individual run stores each sub-model in a run of its own: --sub names which.
      const run = resolveSubRun(need(flags.run, '--run DIR', 'predict'), flags.sub, 'predict');
      if (!flags.input === !flags.csv)
        throw new Error("predict needs either --input FILE… or --csv FILE; see 'sortednet predict --help'");
      const model = await loadModel(run, {
        backend: flags.backend ? parseBackend(flags.backend, '--backend') : undefined,
      });
      const choice: PredictOptions = {
        sub: flags.sub,
        maxFlops: flags.maxFlops,
        maxParams: flags.maxParams,
        maxLatencyMs: flags.maxLatencyMs,
        matchPolarity: flags.matchPolarity,
      };
      let items: Item[];
      if (flags.csv) {
        const table = readCsvTable(flags.csv, { delimiter: flags.delimiter });
        items = csvItems(table, model, labelColumnFor(run, table, flags.labelColumn));
        warnUnknownLabels(items, model, flags.csv);
      } else items = imageItems(flags.input!);
      const predictions: Prediction[] = [];
      for (let i = 0; i < items.length; i += 256) {
        predictions.push(
          ...(await model.predictBatch(
            items.slice(i, i + 256).map((it) => it.input),
            choice,
          )),
        );
      }
      items.forEach((it, i) => {
        for (const note of predictions[i].notes ?? []) console.error(`notice: ${it.source}: ${note}`);
      });
      if (flags.json) {
        const rows = items.map((it, i) => ({
          input: it.source,
          label: predictions[i].label,
          probability: predictions[i].probability,
          probabilities: Object.fromEntries(
            model.classes.map((c, k) => [c, predictions[i].probabilities[k]]),
          ),
          subModel: predictions[i].subModel,
          ...(predictions[i].notes ? { notes: predictions[i].notes } : {}),
          ...(it.truth !== undefined ? { truth: it.truth } : {}),
        }));
        console.log(JSON.stringify(rows, null, 2));
      } else {
        console.log(`sub-model ${predictions[0]?.subModel ?? model.select(choice).id}`);
        items.forEach((it, i) => {
          const p = predictions[i];
          const truth =
            it.truth === undefined ? '' : `  (label ${it.truth}${correct(p, it.truth) ? '' : ', wrong'})`;
          console.log(`${it.source}: ${p.label} ${(100 * p.probability).toFixed(1)}%${truth}`);
        });
        const labelled = items.filter((it) => it.truth !== undefined);
        if (labelled.length) {
          const right = items.filter(
            (it, i) => it.truth !== undefined && correct(predictions[i], it.truth),
          ).length;
          console.log(
            `accuracy ${((100 * right) / labelled.length).toFixed(2)}% on ${labelled.length} labelled rows`,
          );
        }
      }
      model.dispose();
      exit(0);
    });
};
