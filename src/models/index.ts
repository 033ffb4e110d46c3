/** Builds any model family from its plain-data config (the form checkpoints store). */
import { z } from 'zod';
import { Mlp, MlpConfigSchema } from './mlp.js';
import { ResNet, ResNetConfigSchema } from './resnet.js';
import { MobileNetV2, MobileNetV2ConfigSchema } from './mobilenetv2.js';
import { Transformer, TransformerConfigSchema } from './transformer.js';
import { PadResNet, PadResNetConfigSchema } from './pad_resnet.js';
import { MoETransformer, MoETransformerConfigSchema } from './moe_transformer.js';
import type { SortedModel } from './model.js';

/** A model as plain data: its family and that family's full config (what checkpoints store), checked. */
export const ModelSpecSchema = z.discriminatedUnion('family', [
  z.object({ family: z.literal('mlp'), config: MlpConfigSchema }).strict(),
  z.object({ family: z.literal('resnet'), config: ResNetConfigSchema }).strict(),
  z.object({ family: z.literal('mobilenetv2'), config: MobileNetV2ConfigSchema }).strict(),
  z.object({ family: z.literal('transformer'), config: TransformerConfigSchema }).strict(),
  z.object({ family: z.literal('pad-resnet'), config: PadResNetConfigSchema }).strict(),
  z.object({ family: z.literal('moe-transformer'), config: MoETransformerConfigSchema }).strict(),
]);
export type ModelSpec = z.infer<typeof ModelSpecSchema>;

export type Family = ModelSpec['family'];
export const FAMILIES: readonly Family[] = [
  'mlp',
  'resnet',
  'mobilenetv2',
  'transformer',
  'pad-resnet',
  'moe-transformer',
];

export function buildModel(spec: ModelSpec, seed = 1): SortedModel {
  switch (spec.family) {
    case 'mlp':
      return new Mlp(spec.config, seed);
    case 'resnet':
      return new ResNet(spec.config, seed);
    case 'mobilenetv2':
      return new MobileNetV2(spec.config, seed);
    case 'transformer':
      return new Transformer(spec.config, seed);
    case 'pad-resnet':
      return new PadResNet(spec.config, seed);
    case 'moe-transformer':
      return new MoETransformer(spec.config, seed);
    default:
      throw new Error(
        `unknown model family '${(spec as { family: string }).family}'; known: ${FAMILIES.join(', ')}`,
      );
  }
}

/** The spec of a built model (to store in a checkpoint, or to rebuild a shrunk copy). */
export function specOf(model: SortedModel, config = model.config): ModelSpec {
  return { family: model.family, config } as ModelSpec;
}

/**
 * The deployed (compact) copy of a model with PAD layers (PAD-Net §3.3): packed values, λ folded,
 * a config that records the layout so the checkpoint loads back. Outputs equal the masked model's.
 */
export function compactModel(model: SortedModel): SortedModel {
  if (model instanceof PadResNet || model instanceof MoETransformer) return model.deploy();
  throw new Error(
    `compact: a ${model.family} model has no PAD layers (families with them: pad-resnet, moe-transformer)`,
  );
}

export { Mlp, ResNet, MobileNetV2, Transformer, PadResNet, MoETransformer };
export type { SortedModel };
export type { MlpConfig } from './mlp.js';
export type { ResNetConfig } from './resnet.js';
export type { MobileNetV2Config } from './mobilenetv2.js';
export type { TransformerConfig } from './transformer.js';
export type { PadResNetConfig } from './pad_resnet.js';
export type { MoETransformerConfig } from './moe_transformer.js';
