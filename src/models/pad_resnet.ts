/**
 * A sorted ResNet whose 3×3 block convolutions are static, fully dynamic (DY-Conv) or partially
 * dynamic (PAD-Net): the ResNet of resnet.ts with a conv factory, so depth × width sub-models,
 * extraction, BN calibration per sub-model and checkpoints work as for every sorted model. The
 * stem and the 1×1 shortcuts stay static, as in Chen et al. A deployed (compact) model carries
 * `compact` in its config: per PAD conv, its dynamic element count.
 *
 * ```ts
 * const model = new PadResNet(padResNetConfig({ ...shape, widths: [16, 32, 64], blocks: [1, 1, 1], conv: 'pad' }));
 * const logits = model.forward(x, { width: 0.5 }, subModelContext({ width: 0.5 }, 'train', { temperature: 30 }));
 * ```
 */
import { z } from 'zod';
import { count, oneOf, posInt } from '../schema/fields.js';
import { DynamicConv2d } from '../dynamic/dynamic_conv.js';
import { PadConv2d, LAMBDA_MODES, maskLayout, type LambdaMode } from '../dynamic/partial.js';
import { CompactPadConv2d, copyMatchingState } from '../dynamic/compact.js';
import { Conv2d } from '../nn/conv2d.js';
import type { ConvFactory } from '../nn/basic_block.js';
import { ResNet, resnetConfig, ResNetConfigSchema, type ResNetStagesInput } from './resnet.js';

export type ConvMode = 'static' | 'dynamic' | 'pad';
export const CONV_MODES: readonly ConvMode[] = ['static', 'dynamic', 'pad'];

export const PadResNetConfigSchema = ResNetConfigSchema.extend({
  /** What the 3×3 block convolutions are. */
  conv: oneOf(CONV_MODES),
  /** K, kernels per dynamic conv. */
  kernels: posInt,
  /** r, the attention's reduction ratio. */
  reduction: posInt,
  /** Which PAD scale factors are learned (conv 'pad' only). */
  lambdaMode: oneOf(LAMBDA_MODES),
  /** Deployed models only: per PAD conv name, its dynamic element count (see compact.ts). */
  compact: z.record(count).optional(),
});
export type PadResNetConfig = z.infer<typeof PadResNetConfigSchema>;

export const PAD_DEFAULTS = { conv: 'pad', kernels: 4, reduction: 4, lambdaMode: 'both' } as const;

/** A PAD ResNet config from stage widths (stride 2 at the start of every stage but the first). */
export function padResNetConfig(
  o: ResNetStagesInput & {
    conv?: ConvMode;
    kernels?: number;
    reduction?: number;
    lambdaMode?: LambdaMode;
  },
): PadResNetConfig {
  return {
    ...resnetConfig(o),
    conv: o.conv ?? PAD_DEFAULTS.conv,
    kernels: o.kernels ?? PAD_DEFAULTS.kernels,
    reduction: o.reduction ?? PAD_DEFAULTS.reduction,
    lambdaMode: o.lambdaMode ?? PAD_DEFAULTS.lambdaMode,
  };
}

export function checkPadResNetConfig(c: PadResNetConfig): PadResNetConfig {
  // Dynamic and PAD convolutions pad as TensorFlow does; a PyTorch-padded stem would not match them.
  if (c.padding !== undefined && c.padding !== 'same')
    throw new Error(`pad-resnet: padding '${c.padding}' is not supported; its convolutions pad 'same'`);
  if (!CONV_MODES.includes(c.conv))
    throw new Error(`pad-resnet: conv '${c.conv}' is not one of ${CONV_MODES.join(', ')}`);
  if (!LAMBDA_MODES.includes(c.lambdaMode)) {
    throw new Error(`pad-resnet: lambdaMode '${c.lambdaMode}' is not one of ${LAMBDA_MODES.join(', ')}`);
  }
  for (const k of ['kernels', 'reduction'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1)
      throw new Error(`pad-resnet: ${k} ${c[k]} must be a positive integer`);
  }
  return c;
}

/** The block convolutions a config asks for (compact ones where `compact` names them). */
function padConvs(c: PadResNetConfig): ConvFactory {
  return (cin, cout, stride, name, seed) => {
    const compact = c.compact?.[name];
    const opts = { stride, kernels: c.kernels, reduction: c.reduction, name };
    if (compact !== undefined) {
      return new CompactPadConv2d({
        inChannels: cin,
        outChannels: cout,
        kernel: 3,
        stride,
        padding: 'same',
        kernels: c.kernels,
        reduction: c.reduction,
        dynamic: compact,
        name,
      });
    }
    switch (c.conv) {
      case 'static':
        return new Conv2d(cin, cout, 3, seed, { stride, name });
      case 'dynamic':
        return new DynamicConv2d(cin, cout, 3, seed, opts);
      case 'pad':
        return new PadConv2d(cin, cout, 3, seed, { ...opts, lambdaMode: c.lambdaMode });
    }
  };
}

export class PadResNet extends ResNet<PadResNetConfig> {
  override readonly family = 'pad-resnet';

  constructor(config: PadResNetConfig, seed = 1) {
    super(checkPadResNetConfig(config), seed, padConvs(config));
    const built = new Set(this.namedModules().map(([n]) => n));
    for (const name of Object.keys(config.compact ?? {})) {
      if (!built.has(name))
        throw new Error(`pad-resnet: compact layer '${name}' is not a block convolution of this model`);
    }
  }

  /**
   * The deployed copy (PAD-Net §3.3): PAD convs become CompactPadConv2d (packed values, λ folded);
   * everything else, BatchNorm statistics included, is copied. Its outputs equal this model's.
   */
  deploy(): PadResNet {
    const pads = new Map(
      this.namedModules().filter((e): e is [string, PadConv2d] => e[1] instanceof PadConv2d),
    );
    if (pads.size === 0)
      throw new Error(`pad-resnet: conv '${this.config.conv}' has no PAD layers to compact`);
    const compact: Record<string, number> = {};
    for (const [name, m] of pads) compact[name] = maskLayout(m.mask.dataSync()).dynamic.length;
    const deployed = new PadResNet({ ...this.config, compact });
    copyMatchingState(this, deployed);
    for (const [name, m] of deployed.namedModules())
      if (m instanceof CompactPadConv2d) m.load(pads.get(name)!);
    return deployed;
  }
}
