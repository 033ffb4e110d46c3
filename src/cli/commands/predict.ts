/** `sortednet predict`: class and probabilities of images or CSV rows, from a trained run, any sub-model. */
import { parseBackend } from '../../engine/backend.js';
import { loadModel } from '../../deploy/load_node.js';
import type { PredictOptions, Prediction } from '../../deploy/model.js';
import { readCsvTable } from '../../data/user_data.js';
import { need, numArg } from '../args.js';
import type { RegisterCommand } from '../command.js';
import { resolveSubRun } from '../../run/individual.js';
import {
  correct,
  csvItems,
  imageItems,
  labelColumnFor,
  warnUnknownLabels,
  type Item,
} from '../../run/predict_items.js';

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
