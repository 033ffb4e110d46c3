/** Built-in model and grid presets, sized for the datasets that ship offline (28×28 images). */
import type { ModelSpec } from '../models/index.js';
import { resnetConfig } from '../models/resnet.js';
import { mobilenetV2Config } from '../models/mobilenetv2.js';
import { padResNetConfig } from '../models/pad_resnet.js';
import { MOE_TRANSFORMER_DEFAULTS, moeTransformerConfig } from '../models/moe_transformer.js';
import type { GridSpec } from '../sorted/grid.js';
import type { TrainConfig } from '../train/config.js';
import type { TransformerConfig } from '../models/transformer.js';

export interface Preset {
  /** `size` is the image side, or the sequence length of token data (which also gives `vocab`). */
  model: (input: { channels: number; size: number; classes: number; vocab?: number }) => ModelSpec;
  grid: GridSpec;
  description: string;
  /**
   * Language models: `classes` is the tokenizer's vocabulary, trained at the start of a run;
   * `seqLen` (the training window) equals the context the model declares, so generation never
   * runs past what the model was trained on.
   */
  lm?: { vocabSize: number; seqLen: number; train: Partial<TrainConfig> };
}

type LmDims = Pick<TransformerConfig, 'dim' | 'heads' | 'headDim' | 'ffn' | 'layers' | 'maxLen'>;

/**
 * A language-model preset that exits at every depth: LLaMA-style, or GPT-style (learned positions,
 * LayerNorm, GELU, biases: the LMs ONNX export takes). Its vocabulary (`classes`) is the size of the
 * tokenizer trained for the run.
 */
const lmPreset = (arch: 'llama' | 'gpt', description: string, dims: LmDims, lm: Preset['lm']): Preset => ({
  description,
  model: ({ classes }) => ({ family: 'transformer', config: { task: 'lm', arch, vocab: classes, ...dims } }),
  grid: { depth: Array.from({ length: dims.layers }, (_, i) => i + 1) },
  lm,
});

/** The tiny LMs: 3 layers × d 32, context 64. */
const TINY_LM_DIMS: LmDims = { dim: 32, heads: 2, headDim: 16, ffn: 64, layers: 3, maxLen: 64 };

/** The tiny LMs' data and training: BPE vocab 320, context 64, 20 steps (seconds; the tests use them). */
const tinyLm = (): Preset['lm'] => ({
  vocabSize: 320,
  seqLen: 64,
  train: { steps: 20, batchSize: 8, gAcc: 2, warmupSteps: 2 },
});

/** The small LMs' data and training: BPE vocab 2048, context 128, 300 AdamW steps at `lr`. */
const smallLm = (lr: number): Preset['lm'] => ({
  vocabSize: 2048,
  seqLen: 128,
  train: { steps: 300, batchSize: 8, gAcc: 2, warmupSteps: 30, optimizer: { kind: 'adamw', lr } },
});

/** The image fields of a model config from the data's shape. */
const imageOf = (d: Parameters<Preset['model']>[0]) => ({
  inChannels: d.channels,
  imageSize: d.size,
  classes: d.classes,
});

/** The 16 widths of the 160-sub-model grids: 1/16, 2/16, …, 1. */
const sixteenWidths = () => Array.from({ length: 16 }, (_, i) => (i + 1) / 16);

export const PRESETS: Record<string, Preset> = {
  'resnet-small': {
    description:
      'CIFAR-style ResNet, 3 stages × 2 basic blocks (16/32/64 ch): depth 3..6 × width 25..100% = 16 sub-models',
    model: (d) => ({
      family: 'resnet',
      config: resnetConfig({ ...imageOf(d), stem: 16, widths: [16, 32, 64], blocks: [2, 2, 2] }),
    }),
    grid: { depth: [3, 4, 5, 6], width: [0.25, 0.5, 0.75, 1] },
  },
  'resnet-160': {
    description: 'ResNet, 2 stages × 6+5 blocks (16/32 ch): depth 2..11 × 16 widths = 160 sub-models',
    model: (d) => ({
      family: 'resnet',
      config: resnetConfig({ ...imageOf(d), stem: 16, widths: [16, 32], blocks: [6, 5] }),
    }),
    grid: { depth: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], width: sixteenWidths() },
  },
  mlp: {
    description: 'MLP 4 × 256 hidden: depth 1..4 × width 25..100% = 16 sub-models',
    model: ({ channels, size, classes }) => ({
      family: 'mlp',
      config: { inputs: channels * size * size, hidden: [256, 256, 256, 256], classes },
    }),
    grid: { depth: [1, 2, 3, 4], width: [0.25, 0.5, 0.75, 1] },
  },
  tabular: {
    description:
      'MLP for a row of features, 4 hidden layers sized from the feature count (32..256): depth 1..4 × width 25..100% = 16 sub-models',
    model: ({ channels, size, classes }) => {
      const inputs = channels * size * size;
      const hidden = Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(4 * inputs))));
      return { family: 'mlp', config: { inputs, hidden: [hidden, hidden, hidden, hidden], classes } };
    },
    grid: { depth: [1, 2, 3, 4], width: [0.25, 0.5, 0.75, 1] },
  },
  'mlp-160': {
    description: 'MLP 10 × 256 hidden: depth 1..10 × 16 widths = 160 sub-models',
    model: ({ channels, size, classes }) => ({
      family: 'mlp',
      config: { inputs: channels * size * size, hidden: Array(10).fill(256), classes },
    }),
    grid: { depth: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], width: sixteenWidths() },
  },
  mobilenetv2: {
    description: 'small MobileNetV2: depth 3..6 × width 50/100% × expansion 50/100% = 16 sub-models',
    model: (d) => ({
      family: 'mobilenetv2',
      config: mobilenetV2Config({
        ...imageOf(d),
        stem: 16,
        rows: [
          [1, 16, 1, 1],
          [4, 24, 2, 2],
          [4, 32, 3, 2],
        ],
        last: 128,
      }),
    }),
    grid: { depth: [3, 4, 5, 6], width: [0.5, 1], expand: [0.5, 1] },
  },
  'lm-tiny': lmPreset(
    'llama',
    'LLaMA-style LM, 3 layers × d 32, BPE vocab 320, context 64: trains in seconds (tests)',
    TINY_LM_DIMS,
    tinyLm(),
  ),
  'lm-small': lmPreset(
    'llama',
    'LLaMA-style LM, 6 layers × d 192 (6 heads, SwiGLU 512), BPE vocab 2048, context 128 (the window it trains on); exits at every depth',
    { dim: 192, heads: 6, headDim: 32, ffn: 512, layers: 6, maxLen: 128 },
    smallLm(2e-3),
  ),
  'lm-gpt-tiny': lmPreset(
    'gpt',
    'GPT-style LM (learned positions, LayerNorm, GELU), 3 layers × d 32, BPE vocab 320, context 64: exports to ONNX with a KV cache',
    TINY_LM_DIMS,
    tinyLm(),
  ),
  'lm-gpt-small': lmPreset(
    'gpt',
    'GPT-style LM, 6 layers × d 192 (6 heads, GELU 768), BPE vocab 2048, context 128; exits at every depth; exports to ONNX',
    { dim: 192, heads: 6, headDim: 32, ffn: 768, layers: 6, maxLen: 128 },
    smallLm(1e-3),
  ),
  'pad-resnet': {
    description:
      'ResNet of PAD-Net convolutions (K = 4 kernels, κ set by `sortednet partition`), 3 stages × 2 blocks (16/32/64 ch): depth 3..6 × width 50/100% = 8 sub-models',
    model: (d) => ({
      family: 'pad-resnet',
      config: padResNetConfig({
        ...imageOf(d),
        stem: 16,
        widths: [16, 32, 64],
        blocks: [2, 2, 2],
        conv: 'pad',
      }),
    }),
    grid: { depth: [3, 4, 5, 6], width: [0.5, 1] },
  },
  'moe-transformer': {
    description:
      'transformer encoder classifier for token data (--data spamassassin), 2 blocks of dim 32 whose FFNs are PAD-MoE (E = 8, top-2; κ set by `sortednet partition`); the full model only',
    model: ({ size, classes, vocab }) => {
      if (vocab === undefined)
        throw new Error("preset 'moe-transformer' needs token data (e.g. --data spamassassin), not images");
      return {
        family: 'moe-transformer',
        config: moeTransformerConfig({
          ...MOE_TRANSFORMER_DEFAULTS,
          vocab,
          maxLen: size,
          classes,
          dim: 32,
          ffn: 64,
          ffnMode: 'pad-moe',
        }),
      };
    },
    grid: {},
  },
};

export function getPreset(name: string): Preset {
  const p = PRESETS[name];
  if (!p) throw new Error(`unknown model preset '${name}'; known: ${Object.keys(PRESETS).join(', ')}`);
  return p;
}
