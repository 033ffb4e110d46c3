/** Builds any model family from its plain-data config (the form checkpoints store). */
import { Mlp, type MlpConfig } from './mlp.js';
import { ResNet, type ResNetConfig } from './resnet.js';
import { MobileNetV2, type MobileNetV2Config } from './mobilenetv2.js';
import { Transformer, type TransformerConfig } from './transformer.js';
import { PadResNet, type PadResNetConfig } from './pad_resnet.js';
import { MoETransformer, type MoETransformerConfig } from './moe_transformer.js';
import type { SortedModel } from './model.js';

export type ModelSpec =
  | { family: 'mlp'; config: MlpConfig }
  | { family: 'resnet'; config: ResNetConfig }
  | { family: 'mobilenetv2'; config: MobileNetV2Config }
  | { family: 'transformer'; config: TransformerConfig }
  | { family: 'pad-resnet'; config: PadResNetConfig }
  | { family: 'moe-transformer'; config: MoETransformerConfig };

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
export type {
  SortedModel,
  MlpConfig,
  ResNetConfig,
  MobileNetV2Config,
  TransformerConfig,
  PadResNetConfig,
  MoETransformerConfig,
};
