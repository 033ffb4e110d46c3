/**
 * Hugging Face decoder LMs → sortednet: a model folder (config.json, safetensors, tokenizer.json)
 * becomes an ordinary run folder whose full model reproduces the source model's logits. Supported:
 * LlamaForCausalLM (Llama 2/3, TinyLlama, SmolLM), Qwen2ForCausalLM and GPT2LMHeadModel. Whatever
 * else the config asks for (sliding windows, mixtures of experts, ALiBi, other RoPE scalings, …)
 * is refused by name rather than run approximately, and every tensor is accounted for: names
 * nothing maps, tensors the model needs but the folder lacks, and shape mismatches are errors
 * that list them; no parameter is left at its random initialisation.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildModel, type ModelSpec } from '../models/index.js';
import { Transformer, type TransformerConfig } from '../models/transformer.js';
import type { RopeScaling } from '../nn/rotary.js';
import { Grid, type GridSpec } from '../sorted/grid.js';
import { BpeTokenizer } from '../tokenizer/bpe.js';
import { readHfFolder, type HfFolder } from '../io/hf_folder.js';
import type { NamedArray } from '../io/safetensors.js';
import { hasCheckpoint, saveCheckpoint } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { acquireRunLock } from '../io/lock.js';

export const HF_ARCHITECTURES = ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'GPT2LMHeadModel'] as const;
export type HfArchitecture = (typeof HF_ARCHITECTURES)[number];

const TOKENIZER_FILE = 'tokenizer.json';

/** A refusal: what is unsupported, by the config's own names. */
export class HfImportError extends Error {}

type Json = Record<string, unknown>;

const num = (c: Json, key: string, where: string, fallback?: number): number => {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new HfImportError(`${where}: "${key}" must be a number, got ${JSON.stringify(c[key])}`);
  return v;
};
const int = (c: Json, key: string, where: string, fallback?: number): number => {
  const v = num(c, key, where, fallback);
  if (!Number.isInteger(v) || v < 1)
    throw new HfImportError(`${where}: "${key}" must be a positive integer, got ${v}`);
  return v;
};

/** Features some configs carry that sortednet does not implement: refused when switched on. */
function refuseUnsupported(c: Json, arch: HfArchitecture, where: string): void {
  const found: string[] = [];
  const on = (k: string) => c[k] !== undefined && c[k] !== null && c[k] !== false && c[k] !== 0;
  // Sliding-window attention: Qwen2 carries `sliding_window` but uses it only with use_sliding_window.
  if (arch === 'Qwen2ForCausalLM' ? on('use_sliding_window') : on('sliding_window'))
    found.push('sliding-window attention (sliding_window / use_sliding_window)');
  for (const k of ['num_local_experts', 'num_experts', 'num_experts_per_tok', 'moe_intermediate_size'])
    if (on(k)) found.push(`mixture of experts (${k})`);
  if (on('alibi') || c.position_embedding_type === 'alibi') found.push('ALiBi positions (alibi)');
  if (c.partial_rotary_factor !== undefined && c.partial_rotary_factor !== 1)
    found.push(`partial rotary embeddings (partial_rotary_factor ${String(c.partial_rotary_factor)})`);
  if (on('mlp_bias')) found.push('biases in the MLP (mlp_bias)');
  if (on('add_cross_attention')) found.push('cross-attention (add_cross_attention)');
  if (on('scale_attn_by_inverse_layer_idx'))
    found.push('attention scaled by the inverse layer index (scale_attn_by_inverse_layer_idx)');
  if (c.scale_attn_weights === false) found.push('unscaled attention (scale_attn_weights false)');
  if (on('qk_layernorm') || on('use_qk_norm')) found.push('query/key norms (qk_layernorm)');
  if (on('logit_softcapping') || on('final_logit_softcapping') || on('attn_logit_softcapping'))
    found.push('logit soft-capping');
  if (on('layer_types') && Array.isArray(c.layer_types) && c.layer_types.some((t) => t !== 'full_attention'))
    found.push(
      `per-layer attention types (layer_types: ${[...new Set(c.layer_types as string[])].join(', ')})`,
    );
  if (found.length)
    throw new HfImportError(
      `${where}: not supported: ${found.join('; ')}. sortednet imports ${arch} without these; it does not run an approximation`,
    );
}

function ropeScaling(c: Json, where: string): RopeScaling | undefined {
  const s = c.rope_scaling as Json | null | undefined;
  if (s === undefined || s === null) return undefined;
  const type = s.rope_type ?? s.type;
  if (type === 'default') return undefined;
  if (type !== 'llama3')
    throw new HfImportError(
      `${where}: rope_scaling type '${String(type)}' is not supported (supported: llama3, or none)`,
    );
  const w = `${where} rope_scaling`;
  return {
    type: 'llama3',
    factor: num(s, 'factor', w),
    lowFreqFactor: num(s, 'low_freq_factor', w),
    highFreqFactor: num(s, 'high_freq_factor', w),
    originalMaxPositions: num(s, 'original_max_position_embeddings', w),
  };
}

/** The architecture named by config.json (`architectures`, else `model_type`). */
export function hfArchitecture(c: Json, where = 'config.json'): HfArchitecture {
  const archs = c.architectures;
  const name = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : undefined;
  const byType: Record<string, HfArchitecture> = {
    llama: 'LlamaForCausalLM',
    qwen2: 'Qwen2ForCausalLM',
    gpt2: 'GPT2LMHeadModel',
  };
  const arch = name ?? (typeof c.model_type === 'string' ? byType[c.model_type] : undefined);
  if (!arch || !(HF_ARCHITECTURES as readonly string[]).includes(arch))
    throw new HfImportError(
      `${where}: architecture ${name ?? `(model_type ${JSON.stringify(c.model_type)})`} is not supported; supported: LlamaForCausalLM (Llama 2/3, TinyLlama, SmolLM), Qwen2ForCausalLM, GPT2LMHeadModel`,
    );
  return arch as HfArchitecture;
}

/** The sortednet transformer config of a Hugging Face config; unsupported features are refused by name. */
export function hfToTransformerConfig(c: Json, where = 'config.json'): TransformerConfig {
  const arch = hfArchitecture(c, where);
  refuseUnsupported(c, arch, where);
  if (arch === 'GPT2LMHeadModel') {
    const act = c.activation_function ?? 'gelu_new';
    if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh')
      throw new HfImportError(
        `${where}: activation_function '${String(act)}' is not supported (the tanh GELU: gelu_new, gelu_pytorch_tanh)`,
      );
    if (c.tie_word_embeddings === false)
      throw new HfImportError(
        `${where}: GPT-2 with an untied head (tie_word_embeddings false) is not supported`,
      );
    const dim = int(c, 'n_embd', where);
    const heads = int(c, 'n_head', where);
    if (dim % heads !== 0)
      throw new HfImportError(`${where}: n_embd ${dim} is not divisible by n_head ${heads}`);
    return {
      task: 'lm',
      arch: 'gpt',
      vocab: int(c, 'vocab_size', where),
      dim,
      heads,
      headDim: dim / heads,
      ffn: c.n_inner === null || c.n_inner === undefined ? 4 * dim : int(c, 'n_inner', where),
      layers: int(c, 'n_layer', where),
      maxLen: int(c, 'n_positions', where),
      normEps: num(c, 'layer_norm_epsilon', where, 1e-5),
    };
  }
  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu')
    throw new HfImportError(`${where}: hidden_act '${String(act)}' is not supported (LLaMA's SwiGLU: silu)`);
  const dim = int(c, 'hidden_size', where);
  const heads = int(c, 'num_attention_heads', where);
  const kvHeads = int(c, 'num_key_value_heads', where, heads);
  if (heads % kvHeads !== 0)
    throw new HfImportError(
      `${where}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
    );
  if (c.head_dim === undefined && dim % heads !== 0)
    throw new HfImportError(`${where}: hidden_size ${dim} is not divisible by num_attention_heads ${heads}`);
  const qwen2 = arch === 'Qwen2ForCausalLM';
  const scaling = ropeScaling(c, where);
  return {
    task: 'lm',
    arch: 'llama',
    vocab: int(c, 'vocab_size', where),
    dim,
    heads,
    headDim: c.head_dim === undefined || c.head_dim === null ? dim / heads : int(c, 'head_dim', where),
    ffn: int(c, 'intermediate_size', where),
    layers: int(c, 'num_hidden_layers', where),
    maxLen: int(c, 'max_position_embeddings', where),
    ropeBase: num(c, 'rope_theta', where, 10000),
    normEps: num(c, 'rms_norm_eps', where, 1e-6),
    ...(kvHeads !== heads ? { kvHeads } : {}),
    ...(scaling ? { ropeScaling: scaling } : {}),
    // LlamaConfig and Qwen2Config default to an untied head.
    ...(c.tie_word_embeddings === true ? {} : { tiedHead: false }),
    // Qwen2: q/k/v biases always; Llama: attention_bias puts one on o_proj too.
    ...(qwen2 ? { attnBias: 'qkv' as const } : c.attention_bias === true ? { attnBias: 'all' as const } : {}),
  };
}

/** How one sortednet parameter is read from the Hugging Face tensors. */
interface Source {
  hf: string;
  /** Conv1D weights are [in, out]: transposed into Linear's [out, in]. */
  transpose?: boolean;
  /** A part of a fused tensor along its last axis (GPT-2's c_attn: q | k | v): part i of n. */
  part?: [number, number];
}

/** Buffers some checkpoints carry that are not weights (recomputed by any implementation). */
const IGNORED: RegExp[] = [
  /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/, // older Llama checkpoints
  /^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/, // GPT-2's causal-mask buffers
];

/** The Hugging Face source of every parameter of the model (by sortednet name). */
function sources(arch: HfArchitecture, model: Transformer, names: ReadonlySet<string>): Map<string, Source> {
  const out = new Map<string, Source>();
  const L = model.config.layers;
  if (arch === 'GPT2LMHeadModel') {
    // GPT-2's own files name GPT2Model's tensors bare (wte.weight); GPT2LMHeadModel's save_pretrained prefixes them.
    const p = [...names].some((n) => n.startsWith('transformer.')) ? 'transformer.' : '';
    out.set('tokens.weight', { hf: `${p}wte.weight` });
    out.set('positions.weight', { hf: `${p}wpe.weight` });
    for (let i = 0; i < L; i++) {
      const h = `${p}h.${i}`;
      const b = `blocks.${i}`;
      for (const w of ['weight', 'bias']) {
        out.set(`${b}.ln1.${w}`, { hf: `${h}.ln_1.${w}` });
        out.set(`${b}.ln2.${w}`, { hf: `${h}.ln_2.${w}` });
      }
      ['q', 'k', 'v'].forEach((x, j) => {
        out.set(`${b}.attn.${x}.weight`, { hf: `${h}.attn.c_attn.weight`, transpose: true, part: [j, 3] });
        out.set(`${b}.attn.${x}.bias`, { hf: `${h}.attn.c_attn.bias`, part: [j, 3] });
      });
      out.set(`${b}.attn.o.weight`, { hf: `${h}.attn.c_proj.weight`, transpose: true });
      out.set(`${b}.attn.o.bias`, { hf: `${h}.attn.c_proj.bias` });
      out.set(`${b}.ffn.up.weight`, { hf: `${h}.mlp.c_fc.weight`, transpose: true });
      out.set(`${b}.ffn.up.bias`, { hf: `${h}.mlp.c_fc.bias` });
      out.set(`${b}.ffn.down.weight`, { hf: `${h}.mlp.c_proj.weight`, transpose: true });
      out.set(`${b}.ffn.down.bias`, { hf: `${h}.mlp.c_proj.bias` });
    }
    for (const w of ['weight', 'bias']) out.set(`lnFinal.${w}`, { hf: `${p}ln_f.${w}` });
    return out;
  }
  out.set('tokens.weight', { hf: 'model.embed_tokens.weight' });
  for (let i = 0; i < L; i++) {
    const h = `model.layers.${i}`;
    const b = `blocks.${i}`;
    out.set(`${b}.ln1.weight`, { hf: `${h}.input_layernorm.weight` });
    out.set(`${b}.ln2.weight`, { hf: `${h}.post_attention_layernorm.weight` });
    for (const x of ['q', 'k', 'v', 'o'])
      for (const w of ['weight', 'bias'])
        out.set(`${b}.attn.${x}.${w}`, { hf: `${h}.self_attn.${x}_proj.${w}` });
    for (const x of ['gate', 'up', 'down'])
      out.set(`${b}.ffn.${x}.weight`, { hf: `${h}.mlp.${x}_proj.weight` });
  }
  out.set('lnFinal.weight', { hf: 'model.norm.weight' });
  out.set('lmHead.weight', { hf: 'lm_head.weight' });
  return out;
}

/** The tensor `src` describes, in sortednet's layout, or the shape it expected and found. */
function convert(t: NamedArray, src: Source, want: readonly number[]): Float32Array | { expected: number[] } {
  // The Hugging Face shape this target needs.
  const target = [...want];
  let expected = src.transpose ? [...target].reverse() : target;
  if (src.part) expected = [...expected.slice(0, -1), expected[expected.length - 1] * src.part[1]];
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) return { expected };
  const data = t.data as Float32Array;
  const cols = expected[expected.length - 1];
  const rows = data.length / cols;
  const width = src.part ? cols / src.part[1] : cols;
  const from = src.part ? src.part[0] * width : 0;
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < width; c++) {
      const v = data[r * cols + from + c];
      if (src.transpose) out[c * rows + r] = v;
      else out[r * width + c] = v;
    }
  return out;
}

const listed = (names: readonly string[], max = 20): string =>
  names.slice(0, max).join(', ') + (names.length > max ? `, … (${names.length} in all)` : '');

/**
 * The weights of `folder` for `model` by sortednet name, every one accounted for. Throws, listing
 * them: tensors nothing maps, tensors the model needs but the folder lacks, shape mismatches.
 */
export function mapHfTensors(
  folder: Pick<HfFolder, 'dir' | 'tensors'>,
  arch: HfArchitecture,
  model: Transformer,
): Map<string, Float32Array> {
  const names = new Set(folder.tensors.keys());
  const params = model.stateDict(['parameter']);
  const src = sources(arch, model, names);
  const tied = model.lmHead === null;
  const used = new Set<string>();
  const missing: string[] = [];
  const mismatched: string[] = [];
  const unmappedTargets: string[] = [];
  const out = new Map<string, Float32Array>();
  for (const [name, p] of params) {
    const s = src.get(name);
    if (!s) {
      unmappedTargets.push(name);
      continue;
    }
    const t = folder.tensors.get(s.hf);
    if (!t) {
      if (!missing.includes(s.hf)) missing.push(s.hf);
      continue;
    }
    used.add(s.hf);
    const r = convert(t, s, p.shape);
    if (r instanceof Float32Array) out.set(name, r);
    else if (!mismatched.some((m) => m.startsWith(`${s.hf}:`)))
      mismatched.push(`${s.hf}: expected [${r.expected.join(', ')}], found [${t.shape.join(', ')}]`);
  }
  // A tied checkpoint may still store lm_head.weight: accepted when it is the embedding.
  if (tied && names.has('lm_head.weight')) {
    const head = folder.tensors.get('lm_head.weight')!;
    const emb = folder.tensors.get(src.get('tokens.weight')!.hf);
    const same = emb && head.data.length === emb.data.length && head.data.every((v, i) => v === emb.data[i]);
    if (!same)
      mismatched.push(
        'lm_head.weight: the config ties the head to the embedding (tie_word_embeddings), but the stored head differs from it',
      );
    used.add('lm_head.weight');
  }
  const unmapped = [...names].filter((n) => !used.has(n) && !IGNORED.some((re) => re.test(n))).sort();
  const problems: string[] = [];
  if (unmapped.length)
    problems.push(`${unmapped.length} tensor(s) nothing in the model maps: ${listed(unmapped)}`);
  if (missing.length)
    problems.push(`${missing.length} tensor(s) the model needs are missing: ${listed(missing)}`);
  if (mismatched.length) problems.push(`shape mismatch: ${listed(mismatched, 10)}`);
  if (unmappedTargets.length)
    problems.push(`parameters without a source (a bug in the mapping): ${listed(unmappedTargets)}`);
  if (problems.length)
    throw new HfImportError(`${folder.dir}: cannot import as ${arch}: ${problems.join('; ')}`);
  return out;
}

/**
 * The folder's tokenizer as sortednet's byte-level BPE, or a refusal that names what it is.
 * Representable: model BPE, pre_tokenizer ByteLevel (GPT-2's split pattern, no prefix space), no
 * normalizer: GPT-2, SmolLM. Not: SentencePiece-style (Llama 2, TinyLlama: Metaspace, byte
 * fallback), custom split patterns (Llama 3, Qwen2: a Sequence of Split + ByteLevel).
 */
export function hfTokenizer(text: string, where: string, vocab: number): BpeTokenizer {
  let j: Json;
  try {
    j = JSON.parse(text) as Json;
  } catch (e) {
    throw new HfImportError(`${where}: not JSON (${(e as Error).message})`, { cause: e });
  }
  const model = (j.model ?? {}) as Json;
  const pre = (j.pre_tokenizer ?? null) as Json | null;
  const why: string[] = [];
  if (model.type !== 'BPE') why.push(`model type ${String(model.type)} (only BPE)`);
  if (model.byte_fallback === true) why.push('byte_fallback (SentencePiece-style BPE)');
  if (j.normalizer !== null && j.normalizer !== undefined)
    why.push(`normalizer ${String((j.normalizer as Json).type)}`);
  if (pre?.type !== 'ByteLevel')
    why.push(
      `pre_tokenizer ${pre === null ? 'none' : String(pre.type)} (only ByteLevel with GPT-2's split pattern)`,
    );
  else if (pre.add_prefix_space === true) why.push('ByteLevel add_prefix_space');
  else if (pre.use_regex === false) why.push('ByteLevel without its split pattern (use_regex false)');
  if (why.length)
    throw new HfImportError(
      `${where}: this tokenizer cannot be carried over: ${why.join('; ')}. sortednet's tokenizer is byte-level BPE (GPT-2 style)`,
    );
  let tok: BpeTokenizer;
  try {
    tok = BpeTokenizer.fromHuggingFaceJson(text, where);
  } catch (e) {
    throw new HfImportError(`${where}: ${(e as Error).message}`, { cause: e });
  }
  if (tok.vocabSize !== vocab)
    throw new HfImportError(
      `${where}: the tokenizer has ${tok.vocabSize} tokens, the model's vocab_size is ${vocab}; sortednet needs them equal`,
    );
  return tok;
}

export interface HfImportOptions {
  /** The grid of sub-models (default: an exit after every layer, `{ depth: [1..layers] }`). */
  grid?: GridSpec;
  /** The corpus run.json names for later commands (default 'sotu'). */
  data?: string;
  seed?: number;
}

export interface HfImported {
  model: Transformer;
  spec: ModelSpec;
  grid: GridSpec;
  architecture: HfArchitecture;
  tokenizer: BpeTokenizer | null;
  tokenizerJson?: string;
}

/** The model of a Hugging Face folder, every weight loaded (nothing written). */
export function loadHfModel(dir: string, o: Pick<HfImportOptions, 'grid' | 'seed'> = {}): HfImported {
  const folder = readHfFolder(dir);
  const where = join(dir, 'config.json');
  const architecture = hfArchitecture(folder.config, where);
  const config = hfToTransformerConfig(folder.config, where);
  const tokenizer =
    folder.tokenizerJson === undefined
      ? null
      : hfTokenizer(folder.tokenizerJson, join(dir, TOKENIZER_FILE), config.vocab);
  const spec: ModelSpec = { family: 'transformer', config };
  const model = buildModel(spec, o.seed ?? 1) as Transformer;
  try {
    const weights = mapHfTensors(folder, architecture, model);
    const params = model.stateDict(['parameter']);
    const state = new Map([...weights].map(([n, d]) => [n, tf.tensor(d, params.get(n)!.shape)]));
    try {
      model.loadStateDict(state, { kinds: ['parameter'], where: dir });
    } finally {
      tf.dispose([...state.values()]);
    }
    const grid = o.grid ?? { depth: Array.from({ length: config.layers }, (_, i) => i + 1) };
    new Grid(grid, model); // checks the grid against the model (whole key/value groups, depths)
    return { model, spec, grid, architecture, tokenizer, tokenizerJson: folder.tokenizerJson };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * Imports a Hugging Face folder into the new run folder `out`: checkpoint (format 2, step 0, the
 * tokenizer carried over), run.json with the model spec and grid, import.json naming the source.
 * Refuses an `out` that holds a checkpoint; a folder it created is removed again on failure.
 */
export function importHuggingFace(dir: string, out: string, o: HfImportOptions = {}): HfImported {
  const existed = existsSync(out);
  if (existed && !statSync(out).isDirectory())
    throw new Error(`${out} is a file, not a folder; give a new or empty folder for the run`);
  if (hasCheckpoint(out)) throw new Error(`${out} already holds a checkpoint; choose another output folder`);
  const r = loadHfModel(dir, o);
  if (!r.tokenizer || r.tokenizerJson === undefined) {
    r.model.dispose();
    throw new HfImportError(
      `${dir} has no tokenizer.json; an LM run needs its tokenizer (Hugging Face folders have one beside config.json)`,
    );
  }
  mkdirSync(out, { recursive: true });
  const lock = acquireRunLock(out, 'import');
  let ok = false;
  try {
    saveCheckpoint(out, {
      model: r.model,
      grid: r.grid,
      step: 0,
      seed: o.seed ?? 1,
      dataset: o.data ?? 'sotu',
      preprocess: { tokenizer: TOKENIZER_FILE },
      extraFiles: { [TOKENIZER_FILE]: new TextEncoder().encode(r.tokenizerJson) },
    });
    const run = { model: r.spec, data: { name: o.data ?? 'sotu' }, grid: r.grid, train: {} };
    writeFileAtomic(join(out, 'run.json'), JSON.stringify(run, null, 2) + '\n');
    const record = {
      source: resolve(dir),
      architecture: r.architecture,
      parameters: r.model.parameterCount(),
    };
    writeFileAtomic(join(out, 'import.json'), JSON.stringify(record, null, 2) + '\n');
    ok = true;
  } finally {
    lock.release();
    if (!ok && !existed) rmSync(out, { recursive: true, force: true });
  }
  return r;
}
