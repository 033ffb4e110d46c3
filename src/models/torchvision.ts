/**
 * torchvision's ImageNet classifiers as configs of the sorted families: ResNet-18/34/50 (ImageNet
 * stem, basic or bottleneck blocks) and MobileNetV2 (stride-2 stem, no expand conv at t = 1, a
 * last 1×1 conv to 1280), all with PyTorch's symmetric padding. Built with these configs, the
 * models compute torchvision's forward exactly once its weights are loaded (src/io/torchvision.ts),
 * and sort like any other ResNet / MobileNetV2 (depth, width, per-sub-model BatchNorm).
 */
import type { ModelSpec } from './index.js';
import { resnetConfig } from './resnet.js';
import { mobilenetV2Config } from './mobilenetv2.js';

export const TORCHVISION_ARCHS = ['resnet18', 'resnet34', 'resnet50', 'mobilenet_v2'] as const;
export type TorchvisionArch = (typeof TORCHVISION_ARCHS)[number];

export interface TorchvisionShape {
  /** Output classes (torchvision's default 1000). */
  classes?: number;
  /** Image side the model is costed at (default 224; the network itself takes any size). */
  imageSize?: number;
  inChannels?: number;
}

export function checkTorchvisionArch(arch: string): TorchvisionArch {
  if (!(TORCHVISION_ARCHS as readonly string[]).includes(arch))
    throw new Error(`unknown torchvision architecture '${arch}'; supported: ${TORCHVISION_ARCHS.join(', ')}`);
  return arch as TorchvisionArch;
}

/** The model spec of torchvision's `arch` (`torchvision.models.<arch>(num_classes=classes)`). */
export function torchvisionSpec(arch: string, shape: TorchvisionShape = {}): ModelSpec {
  const a = checkTorchvisionArch(arch);
  const base = {
    inChannels: shape.inChannels ?? 3,
    imageSize: shape.imageSize ?? 224,
    classes: shape.classes ?? 1000,
  };
  if (a === 'mobilenet_v2') {
    return {
      family: 'mobilenetv2',
      config: mobilenetV2Config({
        ...base,
        stem: 32,
        // torchvision.models.mobilenetv2's inverted_residual_setting (width_mult 1).
        rows: [
          [1, 16, 1, 1],
          [6, 24, 2, 2],
          [6, 32, 3, 2],
          [6, 64, 4, 2],
          [6, 96, 3, 1],
          [6, 160, 3, 2],
          [6, 320, 1, 1],
        ],
        last: 1280,
        stemStride: 2,
        padding: 'symmetric',
        unitExpansion: false,
      }),
    };
  }
  const blocks = { resnet18: [2, 2, 2, 2], resnet34: [3, 4, 6, 3], resnet50: [3, 4, 6, 3] }[a];
  return {
    family: 'resnet',
    config: resnetConfig({
      ...base,
      stem: 64,
      widths: [64, 128, 256, 512],
      blocks,
      block: a === 'resnet50' ? 'bottleneck' : 'basic',
      stemLayout: 'imagenet',
      padding: 'symmetric',
    }),
  };
}
