/**
 * A torchvision state dict saved as safetensors (`safetensors.torch.save_file(model.state_dict(),
 * path)`) → a sorted ResNet / MobileNetV2 (src/models/torchvision.ts) holding those weights, whose
 * full model computes torchvision's eval-mode forward. Nothing is left at random init: a tensor the
 * model has no place for, one the file lacks, and a shape that differs are errors that name them.
 * The running statistics become the full model's BatchNorm statistics (`stats.full.*`); sub-models
 * calibrate their own, as after any training run.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  buildModel,
  MobileNetV2,
  ResNet,
  type ModelSpec,
  type ResNetConfig,
  type SortedModel,
} from '../models/index.js';
import { torchvisionSpec, checkTorchvisionArch, type TorchvisionArch } from '../models/torchvision.js';
import { namedBatchNorms } from '../nn/batchnorm.js';
import { FULL, subModelId } from '../sorted/submodel.js';
import { decodeSafetensors, type NamedArray } from './safetensors.js';

/** How a torchvision tensor's layout maps to ours: convs OIHW → HWIO, depthwise [C,1,k,k] → [k,k,C,1]. */
type Layout = 'conv' | 'depthwise' | 'plain';

interface Target {
  /** Our state name. */
  name: string;
  layout: Layout;
}

/** torchvision's names for a model's state: every tensor it must find, and its BatchNorms (torch prefix → ours). */
interface NameMap {
  tensors: Map<string, Target>;
  batchNorms: Map<string, string>;
  /** The torch name of the classifier's weight (its rows are the classes). */
  head: string;
}

const FULL_ID = subModelId(FULL);

function nameMap(model: SortedModel): NameMap {
  const tensors = new Map<string, Target>();
  const batchNorms = new Map<string, string>();
  const conv = (t: string, o: string, layout: Layout = 'conv') =>
    tensors.set(`${t}.weight`, { name: `${o}.weight`, layout });
  const bn = (t: string, o: string) => {
    batchNorms.set(t, o);
    tensors.set(`${t}.weight`, { name: `${o}.weight`, layout: 'plain' });
    tensors.set(`${t}.bias`, { name: `${o}.bias`, layout: 'plain' });
    tensors.set(`${t}.running_mean`, { name: `${o}.stats.${FULL_ID}.mean`, layout: 'plain' });
    tensors.set(`${t}.running_var`, { name: `${o}.stats.${FULL_ID}.variance`, layout: 'plain' });
  };
  const linear = (t: string, o: string) => {
    tensors.set(`${t}.weight`, { name: `${o}.weight`, layout: 'plain' });
    tensors.set(`${t}.bias`, { name: `${o}.bias`, layout: 'plain' });
  };
  if (model instanceof ResNet) {
    conv('conv1', 'stem');
    bn('bn1', 'stemBn');
    const config: ResNetConfig = model.config;
    const convs = config.block === 'bottleneck' ? [1, 2, 3] : [1, 2];
    config.stages.forEach((stage, s) =>
      stage.forEach((spec, b) => {
        const t = `layer${s + 1}.${b}`;
        const o = `stages.${s}.${b}`;
        for (const i of convs) {
          conv(`${t}.conv${i}`, `${o}.conv${i}`);
          bn(`${t}.bn${i}`, `${o}.bn${i}`);
        }
        if (spec.projection) {
          conv(`${t}.downsample.0`, `${o}.shortcut`);
          bn(`${t}.downsample.1`, `${o}.shortcutBn`);
        }
      }),
    );
    linear('fc', 'head');
    return { tensors, batchNorms, head: 'fc.weight' };
  }
  if (model instanceof MobileNetV2) {
    conv('features.0.0', 'stem');
    bn('features.0.1', 'stemBn');
    let k = 1;
    model.config.stages.forEach((stage, s) =>
      stage.forEach((spec, b) => {
        const t = `features.${k++}.conv`;
        const o = `stages.${s}.${b}`;
        // torchvision numbers the layers of its block's Sequential; a block of expansion 1 has no expand conv.
        const layers: [string, string, Layout | 'bn'][] =
          spec.expand === false
            ? [
                ['0.0', 'depthwise', 'depthwise'],
                ['0.1', 'bn2', 'bn'],
                ['1', 'project', 'conv'],
                ['2', 'bn3', 'bn'],
              ]
            : [
                ['0.0', 'expand', 'conv'],
                ['0.1', 'bn1', 'bn'],
                ['1.0', 'depthwise', 'depthwise'],
                ['1.1', 'bn2', 'bn'],
                ['2', 'project', 'conv'],
                ['3', 'bn3', 'bn'],
              ];
        for (const [tn, on, kind] of layers) {
          if (kind === 'bn') bn(`${t}.${tn}`, `${o}.${on}`);
          else conv(`${t}.${tn}`, `${o}.${on}`, kind);
        }
      }),
    );
    conv(`features.${k}.0`, 'lastConv');
    bn(`features.${k}.1`, 'lastBn');
    linear('classifier.1', 'head');
    return { tensors, batchNorms, head: 'classifier.1.weight' };
  }
  throw new Error(`torchvision import: a ${model.family} model has no torchvision layout`);
}

/** Our shape [kh, kw, in, out] as torchvision holds it ([out, in, kh, kw]; depthwise [C, 1, kh, kw]). */
function torchShape(ours: readonly number[], layout: Layout): number[] {
  if (layout === 'conv') return [ours[3], ours[2], ours[0], ours[1]];
  if (layout === 'depthwise') return [ours[2], ours[3], ours[0], ours[1]];
  return [...ours];
}

const list = (names: string[]) => names.map((n) => `'${n}'`).join(', ');

export interface TorchvisionImportOptions {
  /** Classes of the classifier (default: the rows of the file's classifier weight). */
  classes?: number;
  /** Image side the model is costed at (default 224). */
  imageSize?: number;
  /** Names the file in errors. */
  source?: string;
}

export interface TorchvisionImport {
  model: SortedModel;
  spec: ModelSpec;
}

/** A torchvision `arch` from the bytes of its state dict saved as safetensors. */
export function torchvisionFromSafetensors(
  bytes: Uint8Array,
  arch: TorchvisionArch | string,
  options: TorchvisionImportOptions = {},
): TorchvisionImport {
  const a = checkTorchvisionArch(arch);
  const source = options.source ?? `torchvision ${a} safetensors`;
  const { tensors: file } = decodeSafetensors(bytes, source);
  const headName = a === 'mobilenet_v2' ? 'classifier.1.weight' : 'fc.weight';
  const classes = options.classes ?? file.get(headName)?.shape[0];
  if (classes === undefined)
    throw new Error(
      `${source}: no '${headName}' to read the classes from; is it a torchvision ${a} state dict?`,
    );
  // Grey-image models replace the first conv by a 1-channel one: its input channels say which.
  const stemName = a === 'mobilenet_v2' ? 'features.0.0.weight' : 'conv1.weight';
  const stem = file.get(stemName);
  const inChannels = stem?.shape.length === 4 ? stem.shape[1] : undefined;
  const spec = torchvisionSpec(a, { classes, imageSize: options.imageSize, inChannels });
  const model = buildModel(spec);
  try {
    loadTorchvisionState(model, file, a, source);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, spec };
}

/**
 * Loads torchvision-named tensors into a model built from `torchvisionSpec(arch)`, checking the
 * names both ways and every shape before anything is written.
 */
export function loadTorchvisionState(
  model: SortedModel,
  file: ReadonlyMap<string, NamedArray>,
  arch: string,
  source: string,
): void {
  const map = nameMap(model);
  // PyTorch's BatchNorm counts its training batches; eval mode does not use the count.
  const counters = new Set([...map.batchNorms.keys()].map((t) => `${t}.num_batches_tracked`));
  const unmapped = [...file.keys()].filter((n) => !map.tensors.has(n) && !counters.has(n));
  const missing = [...map.tensors.keys()].filter((n) => !file.has(n));
  const problems: string[] = [];
  if (unmapped.length)
    problems.push(`${unmapped.length} tensor(s) have no place in torchvision ${arch}: ${list(unmapped)}`);
  if (missing.length)
    problems.push(`${missing.length} tensor(s) of torchvision ${arch} are missing: ${list(missing)}`);
  const ours = new Map<string, readonly number[]>(
    Array.from(model.stateDict(['parameter']), ([n, t]) => [n, t.shape]),
  );
  for (const [t, o] of map.batchNorms) {
    const bn = namedBatchNorms(model).find(([n]) => n === o)?.[1];
    if (!bn) throw new Error(`torchvision import: the model has no BatchNorm '${o}' (for '${t}')`);
    ours.set(`${o}.stats.${FULL_ID}.mean`, [bn.channels]);
    ours.set(`${o}.stats.${FULL_ID}.variance`, [bn.channels]);
  }
  for (const [t, target] of map.tensors) {
    const found = file.get(t);
    const shape = ours.get(target.name);
    if (!found) continue;
    if (!shape) throw new Error(`torchvision import: the model has no '${target.name}' (for '${t}')`);
    const expected = torchShape(shape, target.layout);
    if (found.dtype !== 'F32') problems.push(`tensor '${t}' is ${found.dtype}, expected F32`);
    else if (found.shape.join() !== expected.join())
      problems.push(
        `tensor '${t}': expected shape [${expected.join(', ')}], found [${found.shape.join(', ')}]`,
      );
  }
  if (problems.length) throw new Error(`${source}: ${problems.join('; ')}`);

  const state = new Map<string, tf.Tensor>();
  try {
    for (const [t, { name, layout }] of map.tensors) {
      const { data, shape } = file.get(t)!;
      const x = tf.tensor(data, shape, 'float32');
      if (layout === 'plain') state.set(name, x);
      else {
        state.set(name, tf.transpose(x, layout === 'conv' ? [2, 3, 1, 0] : [2, 3, 0, 1]));
        x.dispose();
      }
    }
    for (const o of map.batchNorms.values()) state.set(`${o}.stats.${FULL_ID}.count`, tf.scalar(1, 'int32'));
    model.loadStateDict(state, { where: source });
  } finally {
    tf.dispose([...state.values()]);
  }
}
