/**
 * A PAD-Net study over library pieces only: for each variant, build the model from its spec,
 * partition it (IMP or random, at initialisation), train it with the one trainer, evaluate it,
 * compact it, and measure the deployed model (parameters, FLOPs, latency of one batch).
 * The Fashion-MNIST and SpamAssassin studies (padnet_fashion.ts, padnet_spam.ts) are this with
 * their data and variants; `sortednet padnet` and `sortednet padnet-spam` run them.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { buildModel, compactModel, type ModelSpec, type SortedModel } from '../models/index.js';
import { Grid } from '../sorted/grid.js';
import { FULL } from '../sorted/submodel.js';
import { subModelContext } from '../nn/module.js';
import { checkKappa, partition } from '../dynamic/imp.js';
import { padLayers, scaleValues } from '../dynamic/partial.js';
import { train } from '../train/trainer.js';
import { resolveTrainConfig } from '../train/config.js';
import {
  evaluateGrid,
  f1Score,
  labelledBatches,
  latencyMs,
  predictions,
  type LabelledData,
} from '../train/evaluate.js';
import type { TemperatureSchedule } from '../train/temperature.js';

export interface StudyVariant {
  /** As written on the command line, e.g. 'static', 'pad:0.3', 'random:0.3'. */
  name: string;
  spec: ModelSpec;
  partition?: { method: 'imp' | 'random'; kappa: number };
}

/** `pad:K` / `random:K` → a partition; anything else → undefined. */
export function parsePartition(text: string): StudyVariant['partition'] | undefined {
  const m = /^(pad|random):([0-9.]+)$/.exec(text);
  if (!m) return undefined;
  return { method: m[1] === 'pad' ? 'imp' : 'random', kappa: checkKappa(Number(m[2]), `variant '${text}'`) };
}

export interface StudyOptions {
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  /** IMP rounds T and calibration mini-batches. */
  rounds: number;
  calibration: number;
  temperature?: TemperatureSchedule;
}

export interface StudyRow {
  name: string;
  accuracy: number;
  /** Binary F1 of class 1 for two classes, macro F1 otherwise. */
  f1: number;
  /** Kept dynamic fraction of the PAD layers' elements (undefined without PAD layers). */
  kappa?: number;
  /** Mean λ_d over PAD layers at the end of training. */
  lambdaD?: number;
  /** Deployed parameters and FLOPs per example (analytic, of the model that runs). */
  params: number;
  flops: number;
  /** Median eval forward of one batch of the test set, deployed model, milliseconds. */
  latencyMs: number;
  trainSeconds: number;
  /** max |compact − masked| logit over that batch (PAD only). */
  compactError?: number;
}

export async function runStudy(
  variants: readonly StudyVariant[],
  data: { train: LabelledData; test: LabelledData },
  o: StudyOptions,
  log: (line: string) => void = console.log,
): Promise<StudyRow[]> {
  const probe = labelledBatches(data.test, 1, o.batch, 1)[0];
  const rows: StudyRow[] = [];
  for (const v of variants) {
    log(`\n== ${v.name}`);
    const model = buildModel(v.spec, o.seed);
    let kappa: number | undefined;
    if (v.partition) {
      const calibration = labelledBatches(data.train, o.calibration, o.batch, o.seed + 777);
      const stats = partition(model, calibration, {
        kappa: v.partition.kappa,
        rounds: v.partition.method === 'imp' ? o.rounds : 1,
        method: v.partition.method,
        seed: o.seed,
      });
      calibration.forEach((b) => tf.dispose([b.x, b.y]));
      kappa = stats.fraction;
      log(`partition (${v.partition.method}): kept ${stats.kept}/${stats.total} = ${kappa.toFixed(4)}`);
      log(`  per mask: ${stats.masks.map((m) => `${m.name} ${m.fraction.toFixed(2)}`).join(', ')}`);
    }
    const grid = new Grid({}, model);
    const config = resolveTrainConfig({
      strategy: 'sorted',
      steps: o.steps,
      batchSize: o.batch,
      gAcc: 1,
      optimizer: { kind: 'adamw', lr: o.lr, weightDecay: 0 },
      warmupSteps: 0,
      seed: o.seed,
      temperature: o.temperature,
    });
    const r = await train(model, grid, data.train, config, {
      onStep: (s) => s.step % 50 === 0 && log(`step ${s.step}/${o.steps}  loss ${s.loss.toFixed(4)}`),
    });
    const [row] = evaluateGrid(model, grid, data.train, data.test, {
      calibrationBatches: 10,
      latencyReps: 1,
    });
    const predicted = predictions(model, grid.largest, data.test);
    const pads = padLayers(model);
    const lambdaD = pads.length
      ? pads.reduce((a, l) => a + scaleValues(l).lambdaD, 0) / pads.length
      : undefined;
    let deployed: SortedModel = model;
    let compactError: number | undefined;
    if (pads.length) {
      deployed = compactModel(model);
      compactError = tf.tidy(() => {
        const ctx = subModelContext(FULL, 'eval');
        const a = model.forward(probe.x, FULL, ctx);
        const b = deployed.forward(probe.x, FULL, ctx);
        return tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
      });
      log(`compact vs masked: max |Δlogit| ${compactError.toExponential(2)}`);
    }
    const cost = deployed.cost(FULL);
    rows.push({
      name: v.name,
      accuracy: row.accuracy,
      f1: f1Score(predicted, data.test.labels, data.test.numClasses),
      kappa,
      lambdaD,
      params: cost.params,
      flops: cost.flops,
      latencyMs: latencyMs(deployed, grid.largest, probe.x, 20),
      trainSeconds: r.seconds,
      compactError,
    });
    log(`test accuracy ${(100 * row.accuracy).toFixed(2)}%  (${r.seconds.toFixed(0)} s training)`);
    if (deployed !== model) deployed.dispose();
    model.dispose();
  }
  tf.dispose([probe.x, probe.y]);
  return rows;
}

/** The rows as a markdown table. */
export function studyTable(rows: readonly StudyRow[], batch: number): string {
  const lines = [
    `| variant | test acc. | F1 | κ (dynamic) | deployed params | MFLOPs / example | latency (ms / batch of ${batch}) | train (s) |`,
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} | ${(100 * r.accuracy).toFixed(2)}% | ${r.f1.toFixed(4)} | ${r.kappa === undefined ? '–' : r.kappa.toFixed(3)} | ` +
        `${r.params.toLocaleString('en-US')} | ${(r.flops / 1e6).toFixed(2)} | ${r.latencyMs.toFixed(1)} | ${r.trainSeconds.toFixed(0)} |`,
    );
  }
  return lines.join('\n');
}

/** Prints the table and writes results.json / results.md into `out`. */
export function writeStudy(
  out: string,
  rows: readonly StudyRow[],
  batch: number,
  command: string,
  options: object,
): void {
  const table = studyTable(rows, batch);
  console.log(`\n${table}`);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'results.json'), JSON.stringify({ command, options, rows }, null, 2));
  writeFileSync(join(out, 'results.md'), `\`${command}\`\n\n${table}\n`);
}
