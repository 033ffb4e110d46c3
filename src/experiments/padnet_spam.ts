/**
 * The PAD-Net MoE study on SpamAssassin (spam vs ham, byte tokens): a small transformer encoder
 * whose FFNs are dense, MoE (E = 8, top-2) or PAD-MoE (IMP κ = 0.5, and random κ = 0.5).
 * Accuracy, F1 (spam = positive), deployed parameters, FLOPs and latency side by side.
 *
 *   sortednet padnet-spam --epochs 2      (options: sortednet padnet-spam --help)
 */
import { initEngine, type BackendName } from '../engine/backend.js';
import { BYTE_VOCAB_SIZE, PAD_TOKEN } from '../data/text.js';
import { spamAssassinSplits } from '../data/email.js';
import { MOE_TRANSFORMER_DEFAULTS, moeTransformerConfig, type FfnMode } from '../models/moe_transformer.js';
import { parsePartition, runStudy, writeStudy, type StudyRow, type StudyVariant } from './padnet_study.js';

export interface SpamOptions {
  backend: BackendName;
  epochs: number;
  batch: number;
  lr: number;
  maxLen: number;
  dim: number;
  ffn: number;
  layers: number;
  experts: number;
  topK: number;
  /** 'dense', 'moe', 'pad:<κ>', 'random:<κ>'. */
  variants: string[];
  seed: number;
  /** Keep only the first `train` training emails (quick runs); 0 = all. */
  train: number;
  out: string;
}

export const SPAM_DEFAULTS: SpamOptions = {
  backend: 'wasm',
  epochs: 2,
  batch: 32,
  lr: 0.002,
  maxLen: 128,
  dim: 32,
  ffn: 64,
  layers: 2,
  experts: 8,
  topK: 2,
  variants: ['dense', 'moe', 'pad:0.5', 'random:0.5'],
  seed: 1,
  train: 0,
  out: 'runs/padnet-spam',
};

export function spamVariant(text: string, o: SpamOptions): StudyVariant {
  const part = parsePartition(text);
  if (!part && text !== 'dense' && text !== 'moe')
    throw new Error(`variant '${text}': use dense, moe, pad:<kappa> or random:<kappa>`);
  const ffnMode: FfnMode = part ? 'pad-moe' : (text as FfnMode);
  const config = moeTransformerConfig({
    ...MOE_TRANSFORMER_DEFAULTS,
    vocab: BYTE_VOCAB_SIZE,
    padId: PAD_TOKEN,
    dim: o.dim,
    heads: 4,
    ffn: o.ffn,
    layers: o.layers,
    maxLen: o.maxLen,
    experts: o.experts,
    topK: o.topK,
    ffnMode,
  });
  return { name: text, spec: { family: 'moe-transformer', config }, partition: part };
}

export async function runSpamStudy(
  o: SpamOptions,
  log: (line: string) => void = console.log,
): Promise<StudyRow[]> {
  await initEngine(o.backend);
  const data = spamAssassinSplits(o.maxLen, o.seed, o.train);
  log(
    `spamassassin: ${data.train.n} train, ${data.test.n} test, ${o.maxLen} byte tokens; backend ${o.backend}`,
  );
  return runStudy(
    o.variants.map((v) => spamVariant(v, o)),
    data,
    {
      steps: Math.max(1, o.epochs * Math.floor(data.train.n / o.batch)),
      batch: o.batch,
      lr: o.lr,
      seed: o.seed,
      rounds: 3,
      calibration: 4,
    },
    log,
  );
}

export async function runSpamReport(o: SpamOptions, command: string): Promise<void> {
  writeStudy(o.out, await runSpamStudy(o), o.batch, command, o);
}
