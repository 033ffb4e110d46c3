/**
 * A JSON model spec as a user writes it: a family and only the fields that differ from the family's
 * built-in preset. The missing fields come from that preset, fitted to the data (input channels,
 * image size, classes, vocabulary) as presets are; the result is the full config run.json records.
 */
import { z } from 'zod';
import type { Family, ModelSpec } from '../models/index.js';
import { resnetConfig, type ResNetConfig } from '../models/resnet.js';
import { mobilenetV2Config, type MobileNetV2Config } from '../models/mobilenetv2.js';
import { CONV_MODES } from '../models/pad_resnet.js';
import { FFN_MODES, moeTransformerConfig, type MoETransformerOptions } from '../models/moe_transformer.js';
import { LAMBDA_MODES } from '../dynamic/partial.js';
import type { GridSpec } from '../sorted/grid.js';
import { getPreset, type Preset } from './presets.js';

export const posInt = z.number().int('must be a positive integer').positive('must be a positive integer');
const posInts = z.array(posInt);
const image = { inChannels: posInt, imageSize: posInt, classes: posInt, stem: posInt };
const basicBlock = z.object({ mid: posInt, out: posInt, stride: posInt, projection: z.boolean() }).strict();
/** ResNet fields; `widths` and `blocks` are resnetConfig's shorthand for `stages`. */
const resnet = { ...image, stages: z.array(z.array(basicBlock)), widths: posInts, blocks: posInts };
const transformer = {
  task: z.enum(['lm', 'classify']),
  vocab: posInt,
  dim: posInt,
  heads: z.union([posInt, posInts]),
  headDim: posInt,
  ffn: z.union([posInt, posInts]),
  layers: posInt,
  maxLen: posInt,
  classes: posInt,
  dropout: z.number().min(0).lt(1),
  padId: z.number().int().min(0),
  arch: z.enum(['gpt', 'llama']),
  ropeBase: z.number().positive(),
  ropeScaling: z
    .object({
      type: z.literal('llama3'),
      factor: z.number().positive(),
      lowFreqFactor: z.number().positive(),
      highFreqFactor: z.number().positive(),
      originalMaxPositions: z.number().positive(),
    })
    .strict(),
  kvHeads: z.union([posInt, posInts]),
  tiedHead: z.boolean(),
  normEps: z.number().positive(),
  attnBias: z.enum(['none', 'qkv', 'all']),
};
const lambdaMode = z.enum(LAMBDA_MODES as [string, ...string[]]);

/** Per family, the fields its config may hold (each optional: missing ones come from the preset). */
const CONFIGS = {
  mlp: {
    inputs: posInt,
    hidden: posInts,
    classes: posInt,
    activation: z.enum(['relu', 'relu6', 'gelu', 'silu', 'none']),
  },
  resnet,
  mobilenetv2: {
    ...image,
    stages: z.array(
      z.array(z.object({ hidden: posInt, out: posInt, stride: posInt, residual: z.boolean() }).strict()),
    ),
    last: posInt,
    /** mobilenetV2Config's shorthand for `stages`: [expansion, channels, blocks, stride] rows. */
    rows: z.array(z.tuple([posInt, posInt, posInt, posInt])),
  },
  transformer,
  'pad-resnet': {
    ...resnet,
    conv: z.enum(CONV_MODES as [string, ...string[]]),
    kernels: posInt,
    reduction: posInt,
    lambdaMode,
    compact: z.record(z.number().int().min(0)),
  },
  'moe-transformer': {
    ...transformer,
    ffnMode: z.enum(FFN_MODES as [string, ...string[]]),
    experts: posInt,
    topK: posInt,
    noisyGating: z.boolean(),
    capacityFactor: z.number().positive(),
    lambdaMode,
    compact: z.record(z.array(z.number().int().min(0))),
  },
} satisfies Record<Family, z.ZodRawShape>;

const familySpec = <F extends Family>(family: F) =>
  z
    .object({ family: z.literal(family), config: z.object(CONFIGS[family]).partial().strict().optional() })
    .strict();

/** A model spec in a run config: checked field by field, unknown fields refused. */
export const ModelSpecSchema = z.discriminatedUnion('family', [
  familySpec('mlp'),
  familySpec('resnet'),
  familySpec('mobilenetv2'),
  familySpec('transformer'),
  familySpec('pad-resnet'),
  familySpec('moe-transformer'),
]);
export type ModelSpecInput = z.infer<typeof ModelSpecSchema>;

/** The preset whose model a family's partial spec starts from. */
const BASE_PRESET: Record<Exclude<Family, 'transformer'>, string> = {
  mlp: 'mlp',
  resnet: 'resnet-small',
  mobilenetv2: 'mobilenetv2',
  'pad-resnet': 'pad-resnet',
  'moe-transformer': 'moe-transformer',
};

/** A small encoder classifier for token data (no preset has one): the moe-transformer preset's sizes. */
const transformerBase: Preset['model'] = ({ size, classes, vocab }) => {
  if (vocab === undefined)
    throw new Error("model family 'transformer' needs token data (e.g. --data spamassassin)");
  return {
    family: 'transformer',
    config: {
      task: 'classify',
      arch: 'gpt',
      vocab,
      maxLen: size,
      classes,
      dim: 32,
      heads: 4,
      headDim: 8,
      ffn: 64,
      layers: 2,
    },
  };
};

/** Fields that change the number of layers: a preset's depth grid no longer fits them. */
const DEPTH_FIELDS = ['stages', 'blocks', 'rows', 'hidden', 'layers'];

type Shape = Parameters<Preset['model']>[0];

/**
 * The full spec (and the grid, the preset's unless given) of a user's partial spec: the family's
 * preset for this data, with the user's fields over it; shorthand fields rebuilt through the helpers.
 */
export function resolveModelSpec(
  user: ModelSpecInput,
  shape: Shape,
  grid: GridSpec | undefined,
  where: string,
): { spec: ModelSpec; grid: GridSpec } {
  const f = user.family;
  const base = f === 'transformer' ? transformerBase : getPreset(BASE_PRESET[f]).model;
  const fields: Record<string, unknown> = { ...user.config };
  const config: Record<string, unknown> = { ...base(shape).config, ...fields };
  if (f === 'resnet' || f === 'pad-resnet') {
    const b = config as unknown as ResNetConfig & { widths?: number[]; blocks?: number[] };
    if (fields.stages === undefined && ['widths', 'blocks', 'stem'].some((k) => k in fields)) {
      const widths = b.widths ?? b.stages.map((st) => st[st.length - 1].out);
      const blocks = b.blocks ?? b.stages.map((st) => st.length);
      if (widths.length !== blocks.length)
        throw new Error(
          `${where}: model.config: widths lists ${widths.length} stages, blocks ${blocks.length}`,
        );
      config.stages = resnetConfig({ ...b, widths, blocks }).stages;
    }
    delete config.widths;
    delete config.blocks;
  }
  if (f === 'mobilenetv2') {
    const b = config as unknown as MobileNetV2Config & { rows?: [number, number, number, number][] };
    if (fields.stages === undefined && ['rows', 'stem'].some((k) => k in fields)) {
      let cin = (base(shape).config as MobileNetV2Config).stem;
      const rows =
        b.rows ??
        b.stages.map((st): [number, number, number, number] => {
          const row: [number, number, number, number] = [
            st[0].hidden / cin,
            st[0].out,
            st.length,
            st[0].stride,
          ];
          cin = st[0].out;
          return row;
        });
      config.stages = mobilenetV2Config({ ...b, rows }).stages;
    }
    delete config.rows;
  }
  if ((f === 'transformer' || f === 'moe-transformer') && fields.headDim === undefined) {
    // headDim follows dim / heads unless the user fixed it.
    delete config.headDim;
    if (f === 'transformer' && typeof config.heads === 'number')
      config.headDim = (config.dim as number) / config.heads;
  }
  const spec = {
    family: f,
    config:
      f === 'moe-transformer' ? moeTransformerConfig(config as unknown as MoETransformerOptions) : config,
  } as ModelSpec;
  if (grid) return { spec, grid };
  const touched = DEPTH_FIELDS.filter((k) => k in fields);
  if (touched.length)
    throw new Error(
      `${where}: a model spec that sets ${touched.join(', ')} needs a 'grid' (the preset's depths may not fit it)`,
    );
  return { spec, grid: f === 'transformer' ? {} : getPreset(BASE_PRESET[f]).grid };
}
