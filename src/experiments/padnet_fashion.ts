/**
 * The PAD-Net study on Fashion-MNIST: static vs fully dynamic (DY-Conv) vs partially dynamic
 * (IMP, κ = 0.3 and 0.5) vs a random partition (κ = 0.3), the same small PAD ResNet for all;
 * accuracy, deployed parameters, FLOPs and measured latency side by side.
 *
 *   sortednet padnet --train-subset 10000 --epochs 3      (options: sortednet padnet --help)
 */
import { initEngine, type BackendName } from '../engine/backend.js';
import { loadDataset } from '../data/registry.js';
import { padResNetConfig, type ConvMode } from '../models/pad_resnet.js';
import { parsePartition, runStudy, writeStudy, type StudyRow, type StudyVariant } from './padnet_study.js';

export interface FashionOptions {
  backend: BackendName;
  train: number;
  test: number;
  epochs: number;
  batch: number;
  lr: number;
  widths: number[];
  kernels: number;
  /** 'static', 'dynamic', 'pad:<κ>', 'random:<κ>'. */
  variants: string[];
  /** IMP rounds T. */
  rounds: number;
  /** Calibration mini-batches for IMP. */
  calibration: number;
  /** Epochs over which the temperature falls from 30 to 1. */
  anneal: number;
  seed: number;
  out: string;
}

export const FASHION_DEFAULTS: FashionOptions = {
  backend: 'wasm',
  train: 10000,
  test: 10000,
  epochs: 3,
  batch: 64,
  lr: 0.002,
  widths: [16, 32, 64],
  kernels: 4,
  variants: ['static', 'dynamic', 'pad:0.3', 'pad:0.5', 'random:0.3'],
  rounds: 3,
  calibration: 4,
  anneal: 1,
  seed: 1,
  out: 'runs/padnet',
};

/** The variant named `text` on a PAD ResNet of these widths (one block per stage). */
export function fashionVariant(
  text: string,
  o: Pick<FashionOptions, 'widths' | 'kernels'>,
  shape: { channels: number; size: number; classes: number },
): StudyVariant {
  const part = parsePartition(text);
  if (!part && text !== 'static' && text !== 'dynamic')
    throw new Error(`variant '${text}': use static, dynamic, pad:<kappa> or random:<kappa>`);
  const conv: ConvMode = part ? 'pad' : (text as ConvMode);
  const config = padResNetConfig({
    inChannels: shape.channels,
    imageSize: shape.size,
    classes: shape.classes,
    stem: o.widths[0],
    widths: o.widths,
    blocks: o.widths.map(() => 1),
    conv,
    kernels: o.kernels,
  });
  return { name: text, spec: { family: 'pad-resnet', config }, partition: part };
}

export async function runFashionStudy(
  o: FashionOptions,
  log: (line: string) => void = console.log,
): Promise<StudyRow[]> {
  await initEngine(o.backend);
  const data = loadDataset('fashion-mnist', { trainSize: o.train, testSize: o.test });
  const shape = { channels: data.train.channels, size: data.train.height, classes: data.train.numClasses };
  const variants = o.variants.map((v) => fashionVariant(v, o, shape));
  log(`fashion-mnist: ${data.train.n} train, ${data.test.n} test; backend ${o.backend}`);
  const stepsPerEpoch = Math.floor(data.train.n / o.batch);
  return runStudy(
    variants,
    data,
    {
      steps: Math.max(1, o.epochs * stepsPerEpoch),
      batch: o.batch,
      lr: o.lr,
      seed: o.seed,
      rounds: o.rounds,
      calibration: o.calibration,
      temperature: { start: 30, end: 1, steps: Math.round(o.anneal * stepsPerEpoch) },
    },
    log,
  );
}

export async function runFashionReport(o: FashionOptions, command: string): Promise<void> {
  writeStudy(o.out, await runFashionStudy(o), o.batch, command, o);
}
