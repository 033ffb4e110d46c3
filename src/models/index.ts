/** Builds any model family from its plain-data config (the form checkpoints store). */
import { Mlp, type MlpConfig } from './mlp.js';
import { ResNet, type ResNetConfig } from './resnet.js';
import { MobileNetV2, type MobileNetV2Config } from './mobilenetv2.js';
import { Transformer, type TransformerConfig } from './transformer.js';
import type { SortedModel } from './model.js';

export type ModelSpec =
  | { family: 'mlp'; config: MlpConfig }
  | { family: 'resnet'; config: ResNetConfig }
  | { family: 'mobilenetv2'; config: MobileNetV2Config }
  | { family: 'transformer'; config: TransformerConfig };

export type Family = ModelSpec['family'];
export const FAMILIES: readonly Family[] = ['mlp', 'resnet', 'mobilenetv2', 'transformer'];

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

export { Mlp, ResNet, MobileNetV2, Transformer };
export type { SortedModel, MlpConfig, ResNetConfig, MobileNetV2Config, TransformerConfig };
