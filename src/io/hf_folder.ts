/**
 * A Hugging Face model folder as files: config.json, the weights (model.safetensors, or shards
 * `model-0000i-of-0000n.safetensors` listed by model.safetensors.index.json) and tokenizer.json.
 * Reads only; what the tensors and the config mean is src/run/hf_import.ts's business.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSafetensors, type NamedArray } from './safetensors.js';

export interface HfFolder {
  dir: string;
  /** config.json, parsed. */
  config: Record<string, unknown>;
  /** Every tensor of every shard, by name, as float32 (F16 and BF16 widened). */
  tensors: Map<string, NamedArray>;
  /** The safetensors file each tensor came from (for messages). */
  fileOf: Map<string, string>;
  /** tokenizer.json's text, when the folder has one. */
  tokenizerJson?: string;
}

const INDEX = 'model.safetensors.index.json';

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** The weight files of a folder: the index's shards (all of them present), or model.safetensors. */
function weightFiles(dir: string): { files: string[]; weightMap?: Record<string, string> } {
  const index = join(dir, INDEX);
  if (existsSync(index)) {
    const j = readJson(index) as { weight_map?: Record<string, string> };
    if (!j || typeof j.weight_map !== 'object' || j.weight_map === null)
      throw new Error(`${index} has no "weight_map" object of tensor name → shard file`);
    const files = [...new Set(Object.values(j.weight_map))].sort();
    const absent = files.filter((f) => !existsSync(join(dir, f)));
    if (absent.length)
      throw new Error(
        `${index} lists shards missing from ${dir}: ${absent.join(', ')} (an incomplete download?)`,
      );
    return { files, weightMap: j.weight_map };
  }
  if (existsSync(join(dir, 'model.safetensors'))) return { files: ['model.safetensors'] };
  const other = readdirSync(dir).filter((f) => /\.(bin|pt|pth|h5|msgpack|gguf)$/.test(f));
  throw new Error(
    `${dir} has neither model.safetensors nor ${INDEX}` +
      (other.length
        ? `; found ${other.join(', ')}: only safetensors weights are read (convert them with the Python package, or save the model with safe_serialization=True)`
        : ''),
  );
}

/** Reads a Hugging Face model folder; a missing file, a broken index or a shard disagreeing with it is an error. */
export function readHfFolder(dir: string): HfFolder {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new Error(
      `${dir} is not a folder; give the Hugging Face model folder (config.json, *.safetensors)`,
    );
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath))
    throw new Error(`${dir} has no config.json; is it a Hugging Face model folder?`);
  const config = readJson(configPath);
  if (config === null || typeof config !== 'object' || Array.isArray(config))
    throw new Error(`${configPath} is not a JSON object`);
  const { files, weightMap } = weightFiles(dir);
  const tensors = new Map<string, NamedArray>();
  const fileOf = new Map<string, string>();
  for (const f of files) {
    const path = join(dir, f);
    const { tensors: part } = decodeSafetensors(readFileSync(path), path, { widen: true });
    for (const [name, t] of part) {
      if (tensors.has(name)) throw new Error(`tensor '${name}' is in both ${fileOf.get(name)} and ${f}`);
      if (weightMap && weightMap[name] !== f)
        throw new Error(
          `${join(dir, INDEX)} puts '${name}' in ${weightMap[name] ?? 'no file'}, but it is in ${f}`,
        );
      tensors.set(name, t);
      fileOf.set(name, f);
    }
  }
  if (weightMap) {
    const absent = Object.keys(weightMap).filter((n) => !tensors.has(n));
    if (absent.length)
      throw new Error(`${join(dir, INDEX)} lists tensors its shards lack: ${absent.join(', ')}`);
  }
  const tok = join(dir, 'tokenizer.json');
  return {
    dir,
    config: config as Record<string, unknown>,
    tensors,
    fileOf,
    tokenizerJson: existsSync(tok) ? readFileSync(tok, 'utf8') : undefined,
  };
}
