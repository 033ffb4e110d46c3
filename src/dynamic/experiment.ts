/**
 * The PAD-Net experiment on Fashion-MNIST: static vs fully dynamic (DY-Conv) vs partially dynamic
 * (IMP, κ = 0.3 and 0.5) vs a random partition (κ = 0.3), the same small ResNet for all; accuracy,
 * deployed parameters, FLOPs and measured latency side by side.
 *
 *   sortednet padnet --train 10000 --epochs 3      (options: sortednet padnet --help)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine, type BackendName } from '../engine/backend.js';
import { loadDataset } from '../data/registry.js';
import { PadResNet, PAD_RESNET_DEFAULTS, type ConvMode } from '../models/pad_resnet.js';
import { partition, checkKappa, type PartitionResult } from './imp.js';
import { padLayers, scaleValues } from './partial.js';
import { compareVariants, type VariantRow } from './compact.js';
import { batchIndices, batchOf, imageSplit, trainPad, type ClassificationSplit } from './train_pad.js';

export interface VariantSpec {
  /** As written on the command line: 'static', 'dynamic', 'pad:0.3', 'random:0.3'. */
  name: string;
  conv: ConvMode;
  partition?: { method: 'imp' | 'random'; kappa: number };
}

export function parseVariant(text: string): VariantSpec {
  if (text === 'static' || text === 'dynamic') return { name: text, conv: text };
  const m = /^(pad|random):([0-9.]+)$/.exec(text);
  if (!m) throw new Error(`variant '${text}': use static, dynamic, pad:<kappa> or random:<kappa>`);
  const kappa = checkKappa(Number(m[2]), `variant '${text}'`);
  return { name: text, conv: 'pad', partition: { method: m[1] === 'pad' ? 'imp' : 'random', kappa } };
}

export interface ExperimentOptions {
  backend: BackendName;
  train: number;
  test: number;
  epochs: number;
  batch: number;
  lr: number;
  widths: number[];
  kernels: number;
  variants: VariantSpec[];
  /** IMP rounds T. */
  rounds: number;
  /** Calibration mini-batches for IMP. */
  calibration: number;
  /** Epochs over which the temperature falls from 30 to 1. */
  anneal: number;
  seed: number;
  out: string;
}

export const EXPERIMENT_DEFAULTS: ExperimentOptions = {
  backend: 'wasm',
  train: 10000,
  test: 10000,
  epochs: 3,
  batch: 64,
  lr: 0.002,
  widths: [16, 32, 64],
  kernels: 4,
  variants: ['static', 'dynamic', 'pad:0.3', 'pad:0.5', 'random:0.3'].map(parseVariant),
  rounds: 3,
  calibration: 4,
  anneal: 1,
  seed: 1,
  out: 'runs/padnet',
};

export interface ExperimentRow extends VariantRow {
  accuracy: number;
  trainSeconds: number;
  /** Kept dynamic fraction of the PAD layers' elements (1 for 'dynamic', 0 for 'static'). */
  kappa: number;
  /** Mean λ_d over PAD layers at the end of training. */
  lambdaD?: number;
  /** max |compact − masked| over a test batch (PAD only). */
  compactError?: number;
}

/** Runs every variant and returns one row each; logs progress through `log`. */
export async function runPadExperiment(
  options: ExperimentOptions,
  log: (line: string) => void = console.log,
): Promise<ExperimentRow[]> {
  await initEngine(options.backend);
  const data = loadDataset('fashion-mnist', { trainSize: options.train, testSize: options.test });
  const train = imageSplit(data.train);
  const test = imageSplit(data.test);
  log(`fashion-mnist: ${train.n} train, ${test.n} test; backend ${options.backend}`);
  const probe = batchOf(test, batchIndices(test.n, options.batch, false)[0]);
  const results: {
    row: Omit<ExperimentRow, keyof VariantRow>;
    model: PadResNet;
    name: string;
    accuracy: number;
  }[] = [];

  for (const variant of options.variants) {
    log(`\n== ${variant.name}`);
    const model = new PadResNet(
      {
        ...PAD_RESNET_DEFAULTS,
        inChannels: train.sampleShape[2],
        imageSize: train.sampleShape[0],
        classes: train.classes,
        stem: options.widths[0],
        widths: options.widths,
        blocks: options.widths.map(() => 1),
        conv: variant.conv,
        kernels: options.kernels,
      },
      options.seed,
    );
    let stats: PartitionResult | null = null;
    if (variant.partition) {
      const calibration = calibrationBatches(train, options.batch, options.calibration, options.seed);
      stats = partition(model, calibration, {
        kappa: variant.partition.kappa,
        rounds: variant.partition.method === 'imp' ? options.rounds : 1,
        method: variant.partition.method,
        seed: options.seed,
      });
      calibration.forEach((b) => tf.dispose([b.x, b.y]));
      log(
        `partition (${variant.partition.method}): kept ${stats.kept}/${stats.total} = ${stats.fraction.toFixed(4)}`,
      );
      log(`  per mask: ${stats.masks.map((m) => `${m.name} ${m.fraction.toFixed(2)}`).join(', ')}`);
    }
    const result = trainPad(model, train, test, {
      epochs: options.epochs,
      batchSize: options.batch,
      learningRate: options.lr,
      seed: options.seed,
      temperature: { start: 30, end: 1, epochs: options.anneal },
      log,
    });
    const pads = padLayers(model);
    const lambdaD = pads.length
      ? pads.reduce((a, l) => a + scaleValues(l).lambdaD, 0) / pads.length
      : undefined;
    const deployed = model.deploy();
    const compactError = stats
      ? tf.tidy(() => {
          const ctx = { mode: 'eval' as const, key: 'full' };
          const a = model.forward(probe.x, ctx).logits;
          const b = deployed.forward(probe.x, ctx).logits;
          return tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
        })
      : undefined;
    if (compactError !== undefined) log(`compact vs masked: max |diff| ${compactError.toExponential(2)}`);
    model.dispose();
    results.push({
      name: variant.name,
      model: deployed,
      accuracy: result.test.accuracy,
      row: {
        trainSeconds: result.trainSeconds,
        kappa: stats ? stats.fraction : variant.conv === 'dynamic' ? 1 : 0,
        lambdaD,
        compactError,
      },
    });
  }

  log('\nlatency (eval forward of one test batch, deployed models)');
  const rows = compareVariants(
    results.map((r) => ({ name: r.name, model: r.model, accuracy: r.accuracy })),
    probe.x,
    { repeats: 20, warmup: 3 },
  );
  const out = rows.map((row, i) => ({ ...row, ...results[i].row, accuracy: results[i].accuracy }));
  results.forEach((r) => r.model.dispose());
  tf.dispose([probe.x, probe.y]);
  return out;
}

function calibrationBatches(train: ClassificationSplit, batch: number, count: number, seed: number) {
  return batchIndices(train.n, batch, true, seed + 777)
    .slice(0, count)
    .map((idx) => batchOf(train, idx));
}

/** The rows as a markdown table. */
export function markdownTable(rows: readonly ExperimentRow[], batch: number): string {
  const lines = [
    `| variant | test acc. | κ (dynamic) | deployed params | MFLOPs / sample | latency (ms / batch of ${batch}) | train (s) |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} | ${(100 * r.accuracy).toFixed(2)}% | ${r.kappa.toFixed(3)} | ${r.params.toLocaleString('en-US')} | ` +
        `${(r.flops / 1e6).toFixed(2)} | ${r.latencyMs.toFixed(1)} | ${r.trainSeconds.toFixed(0)} |`,
    );
  }
  return lines.join('\n');
}

/** Runs the experiment, prints the table and writes results.json / results.md into `options.out`. */
export async function runPadExperimentReport(options: ExperimentOptions, command: string): Promise<void> {
  const rows = await runPadExperiment(options);
  const table = markdownTable(rows, options.batch);
  console.log(`\n${table}`);
  mkdirSync(options.out, { recursive: true });
  writeFileSync(join(options.out, 'results.json'), JSON.stringify({ command, options, rows }, null, 2));
  writeFileSync(join(options.out, 'results.md'), `\`${command}\`\n\n${table}\n`);
}
