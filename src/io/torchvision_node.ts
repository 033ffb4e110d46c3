/** `importTorchvision`: a torchvision state dict in a `.safetensors` file → a sorted model (Node). */
import { readFileSync } from 'node:fs';
import type { TorchvisionArch } from '../models/torchvision.js';
import {
  torchvisionFromSafetensors,
  type TorchvisionImport,
  type TorchvisionImportOptions,
} from './torchvision.js';

/**
 * Reads `path` (saved by `safetensors.torch.save_file(model.state_dict(), path)`) as torchvision's
 * `arch` (resnet18, resnet34, resnet50, mobilenet_v2). The model and its spec come back; save them
 * as a run with `saveCheckpoint` like any trained model.
 */
export function importTorchvision(
  path: string,
  arch: TorchvisionArch | string,
  options: Omit<TorchvisionImportOptions, 'source'> = {},
): TorchvisionImport {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read the torchvision weights ${path}: ${(e as Error).message}`, { cause: e });
  }
  return torchvisionFromSafetensors(bytes, arch, { ...options, source: path });
}
