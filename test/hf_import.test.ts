/**
 * Hugging Face decoder LMs: folders written by the PyTorch package's reference of the Hugging Face
 * modelling code (python/sortednet_torch/hf.py: LLaMA with grouped-query attention, an untied head
 * and Llama 3 RoPE scaling in two shards; Qwen2 with q/k/v biases in bfloat16; GPT-2 with Conv1D
 * weights) are imported as sortednet runs: the same next-token logits within 1e-4 and the same 50
 * greedy tokens (the reference recomputes every step; sortednet decodes on its KV cache). Without
 * PyTorch those skip; the refusals (missing, extra and misshapen tensors, unsupported configs and
 * tokenizers) and the grouped-query sub-models run everywhere.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, Transformer, type TransformerConfig } from '../src/models/index.js';
import { extractSubModel } from '../src/models/extract.js';
import { encodeSafetensors, decodeSafetensors, type NamedArray } from '../src/io/safetensors.js';
import { hfToTransformerConfig, hfTokenizer, importHuggingFace, loadHfModel } from '../src/run/hf_import.js';
import { loadLm } from '../src/infer/load_lm.js';
import { generate } from '../src/infer/generate.js';
import { readRunJson } from '../src/run/run_folder.js';
import { main } from '../src/cli/main.js';
import { PYTHON_PACKAGE, runPython, scratch, torchSkip } from './torch_helpers.js';
import { logitsOf, maxDiff } from './lm_helpers.js';

const dir = scratch('hf-import-');
const PROMPT = [5, 70, 120, 3, 200, 17, 9, 42];

before(async () => {
  await initEngine('wasm');
});

for (const kind of ['llama-gqa', 'qwen2', 'gpt2']) {
  test(
    `hf import: ${kind} logits within 1e-4 of the PyTorch reference, 50 greedy tokens equal`,
    { skip: torchSkip },
    async () => {
      const folder = join(dir, `hf-${kind}`);
      // Written and run by the reference in one process: logits of PROMPT, 50 greedy tokens.
      const ref = JSON.parse(
        runPython([
          ...['-m', 'sortednet_torch.hf', 'write', '--kind', kind, '--out', folder, '--seed', '3'],
          ...['--ids', PROMPT.join(','), '--greedy', '50'],
        ]),
      ) as { logits: number[][]; greedy: number[] };
      const run = join(dir, `run-${kind}`);
      importHuggingFace(folder, run);
      // Through the run folder, as every command reads it: checkpoint, spec, tokenizer.
      const { model, tokenizer } = await loadLm(run);
      assert.equal(tokenizer.vocabSize, model.config.vocab);
      const diff = maxDiff(logitsOf(model, PROMPT), ref.logits);
      assert.ok(diff < 1e-4, `${kind}: max |logit difference| ${diff}`);
      const g = generate(model, PROMPT, { maxNewTokens: 50, temperature: 0 });
      assert.deepEqual(g.tokens, ref.greedy);
      assert.ok(new Set(ref.greedy).size > 1, 'the reference continuation should not be one token repeated');
      // The PyTorch package: its own import, and this run loaded there, give the reference's logits;
      // the run it writes loads here with the same logits.
      const pyRun = join(dir, `py-run-${kind}`);
      const check = JSON.parse(
        runPython([
          join(PYTHON_PACKAGE, 'tests', 'hf_import_check.py'),
          folder,
          run,
          pyRun,
          PROMPT.join(','),
        ]),
      ) as { pytorch_import: number; typescript_run: number };
      assert.ok(check.pytorch_import < 1e-4 && check.typescript_run < 1e-4, JSON.stringify(check));
      const fromPy = await loadLm(pyRun);
      assert.ok(maxDiff(logitsOf(fromPy.model, PROMPT), ref.logits) < 1e-4);
      fromPy.model.dispose();
      model.dispose();
    },
  );
}

/** A LLaMA with grouped-query attention (6 heads, 2 key/value heads) and an untied head. */
const gqaConfig: TransformerConfig = {
  task: 'lm',
  arch: 'llama',
  vocab: 40,
  dim: 24,
  heads: 6,
  kvHeads: 2,
  headDim: 4,
  ffn: 32,
  layers: 3,
  maxLen: 64,
  tiedHead: false,
  normEps: 1e-5,
  attnBias: 'qkv',
  ropeBase: 50000,
  ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
};

test('grouped-query attention: sub-models keep whole key/value groups; the KV cache holds key/value heads', () => {
  const model = buildModel({ family: 'transformer', config: gqaConfig }, 5) as Transformer;
  const ids = [1, 7, 3, 9, 30, 2];
  // 3 query heads share each key/value head: 3 and 6 heads are whole groups, 4 is not.
  assert.doesNotThrow(() => model.validate({ heads: 3 }));
  assert.throws(
    () => model.validate({ heads: 4 }),
    /heads 4 .* not a whole number of key\/value groups: 3 query heads share each/,
  );
  // A narrower sub-model extracted as a standalone model gives the same logits (kvHeads shrinks with heads).
  const sub = { depth: 2, heads: 3 };
  const small = extractSubModel<TransformerConfig>(
    model,
    sub,
    (c) => buildModel({ family: 'transformer', config: c }) as Transformer,
  ) as Transformer;
  assert.equal(small.config.kvHeads, 1);
  assert.ok(maxDiff(logitsOf(small, ids), logitsOf(model, ids, sub)) < 1e-5);
  // Decoding on the cache at an exit equals recomputing that exit's argmax token by token.
  const g = generate(model, ids, { maxNewTokens: 8, temperature: 0, exit: 2 });
  const seq = [...ids];
  for (let i = 0; i < 8; i++) {
    const last = logitsOf(model, seq, { depth: 2 }).at(-1)!;
    seq.push(last.indexOf(Math.max(...last)));
  }
  assert.deepEqual(g.tokens, seq.slice(ids.length));
  // Only the key/value heads are projected: k and v are [kvHeads·headDim, dim].
  assert.deepEqual(model.blocks.items[0].attn.k.weight.shape, [8, 24]);
  assert.deepEqual(model.lmHead?.weight.shape, [40, 24]);
  model.dispose();
  small.dispose();
});

// ---- A tiny GPT-2-layout folder written here (no PyTorch needed) for the refusals.

const GPT2 = {
  architectures: ['GPT2LMHeadModel'],
  model_type: 'gpt2',
  vocab_size: 20,
  n_embd: 8,
  n_head: 2,
  n_layer: 2,
  n_positions: 16,
  activation_function: 'gelu_new',
  layer_norm_epsilon: 1e-5,
};

function gpt2Tensors(): Map<string, NamedArray> {
  const t = new Map<string, NamedArray>();
  let seed = 1;
  const add = (name: string, shape: number[]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from(
      { length: n },
      () => (seed = (seed * 48271) % 2147483647) / 2147483647 - 0.5,
    );
    t.set(name, { dtype: 'F32', shape, data });
  };
  add('wte.weight', [20, 8]);
  add('wpe.weight', [16, 8]);
  for (let i = 0; i < 2; i++) {
    for (const ln of ['ln_1', 'ln_2']) {
      add(`h.${i}.${ln}.weight`, [8]);
      add(`h.${i}.${ln}.bias`, [8]);
    }
    add(`h.${i}.attn.c_attn.weight`, [8, 24]);
    add(`h.${i}.attn.c_attn.bias`, [24]);
    add(`h.${i}.attn.c_proj.weight`, [8, 8]);
    add(`h.${i}.attn.c_proj.bias`, [8]);
    add(`h.${i}.attn.bias`, [1, 1, 16, 16]); // the causal-mask buffer some GPT-2 files carry
    add(`h.${i}.mlp.c_fc.weight`, [8, 32]);
    add(`h.${i}.mlp.c_fc.bias`, [32]);
    add(`h.${i}.mlp.c_proj.weight`, [32, 8]);
    add(`h.${i}.mlp.c_proj.bias`, [8]);
  }
  add('ln_f.weight', [8]);
  add('ln_f.bias', [8]);
  return t;
}

function writeFolder(name: string, config: object, tensors: Map<string, NamedArray>): string {
  const f = join(dir, name);
  mkdirSync(f, { recursive: true });
  writeFileSync(join(f, 'config.json'), JSON.stringify(config));
  writeFileSync(join(f, 'model.safetensors'), encodeSafetensors(tensors));
  return f;
}

test('hf import: the GPT-2 layout loads (Conv1D transposed, c_attn split into q, k, v)', () => {
  const t = gpt2Tensors();
  const { model } = loadHfModel(writeFolder('gpt2-ok', GPT2, t));
  const cAttn = t.get('h.1.attn.c_attn.weight')!.data; // [in 8, out 24]: k is columns 8..15
  const k = model.blocks.items[1].attn.k.weight.arraySync() as number[][]; // [out 8, in 8]
  assert.equal(k[3][5], cAttn[5 * 24 + 8 + 3]);
  const down = t.get('h.0.mlp.c_proj.weight')!.data; // [in 32, out 8]
  assert.equal(
    (model.blocks.items[0].ffn as unknown as { down: { weight: tf.Tensor } }).down.weight.shape[1],
    32,
  );
  assert.equal(
    (
      (
        model.blocks.items[0].ffn as unknown as { down: { weight: tf.Tensor } }
      ).down.weight.arraySync() as number[][]
    )[2][7],
    down[7 * 8 + 2],
  );
  model.dispose();
});

test('hf import: missing and extra tensors are refused with their names', () => {
  const t = gpt2Tensors();
  t.delete('h.1.mlp.c_fc.bias');
  t.delete('ln_f.bias');
  t.set('h.0.attn.q_norm.weight', { dtype: 'F32', shape: [8], data: new Float32Array(8) });
  t.set('score.weight', { dtype: 'F32', shape: [2, 8], data: new Float32Array(16) });
  const f = writeFolder('gpt2-bad-names', GPT2, t);
  assert.throws(
    () => loadHfModel(f),
    (e: Error) => {
      assert.match(
        e.message,
        /2 tensor\(s\) nothing in the model maps: h\.0\.attn\.q_norm\.weight, score\.weight/,
      );
      assert.match(e.message, /2 tensor\(s\) the model needs are missing: h\.1\.mlp\.c_fc\.bias, ln_f\.bias/);
      return true;
    },
  );
});

test(
  'hf import (PyTorch package): missing and extra tensors are refused with their names',
  { skip: torchSkip },
  () => {
    const t = gpt2Tensors();
    t.delete('ln_f.bias');
    t.set('score.weight', { dtype: 'F32', shape: [2, 8], data: new Float32Array(16) });
    const f = writeFolder('gpt2-bad-names-py', GPT2, t);
    assert.throws(
      () => runPython(['-m', 'sortednet_torch.hf_import', '--hf', f, '--out', join(dir, 'py-bad')]),
      /1 tensor\(s\) nothing in the model maps: score\.weight; 1 tensor\(s\) the model needs are missing: ln_f\.bias/,
    );
    assert.ok(!existsSync(join(dir, 'py-bad')));
  },
);

test('hf import: a shape mismatch names the tensor, the expected and the found shape', () => {
  const t = gpt2Tensors();
  t.set('h.0.attn.c_attn.weight', { dtype: 'F32', shape: [24, 8], data: new Float32Array(192) }); // Linear layout
  assert.throws(
    () => loadHfModel(writeFolder('gpt2-bad-shape', GPT2, t)),
    /shape mismatch: h\.0\.attn\.c_attn\.weight: expected \[8, 24\], found \[24, 8\]/,
  );
});

test('hf import: a sharded folder whose index names a missing shard is refused', () => {
  const f = writeFolder('gpt2-shards', GPT2, gpt2Tensors());
  writeFileSync(
    join(f, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { 'wte.weight': 'model-00001-of-00002.safetensors' } }),
  );
  assert.throws(() => loadHfModel(f), /lists shards missing from .*: model-00001-of-00002\.safetensors/);
});

const LLAMA = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 32,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  hidden_act: 'silu',
};

test('hf import: configs with unsupported features are refused by name', () => {
  const refused: [object, RegExp][] = [
    [{ ...LLAMA, sliding_window: 4096 }, /not supported: sliding-window attention/],
    [
      { ...LLAMA, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', use_sliding_window: true },
      /sliding-window attention/,
    ],
    [{ ...LLAMA, num_local_experts: 8, num_experts_per_tok: 2 }, /mixture of experts \(num_local_experts\)/],
    [{ ...LLAMA, alibi: true }, /ALiBi/],
    [
      { ...LLAMA, rope_scaling: { rope_type: 'yarn', factor: 4 } },
      /rope_scaling type 'yarn' is not supported/,
    ],
    [{ ...LLAMA, mlp_bias: true }, /mlp_bias/],
    [{ ...LLAMA, hidden_act: 'gelu' }, /hidden_act 'gelu' is not supported/],
    [{ ...LLAMA, num_key_value_heads: 3 }, /not a multiple of num_key_value_heads 3/],
    [{ ...GPT2, activation_function: 'relu' }, /activation_function 'relu' is not supported/],
    [{ ...GPT2, scale_attn_by_inverse_layer_idx: true }, /scale_attn_by_inverse_layer_idx/],
    [
      { ...LLAMA, architectures: ['MixtralForCausalLM'], model_type: 'mixtral' },
      /architecture MixtralForCausalLM is not supported; supported: LlamaForCausalLM/,
    ],
  ];
  for (const [config, message] of refused)
    assert.throws(() => hfToTransformerConfig(config as Record<string, unknown>), message);
  // What is supported maps onto the transformer's options.
  const qwen = hfToTransformerConfig({
    ...LLAMA,
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    tie_word_embeddings: true,
    sliding_window: 4096,
    use_sliding_window: false,
  });
  assert.equal(qwen.attnBias, 'qkv');
  assert.equal(qwen.tiedHead, undefined);
  const llama = hfToTransformerConfig({ ...LLAMA, rms_norm_eps: 1e-5, rope_theta: 500000 });
  assert.deepEqual([llama.kvHeads, llama.tiedHead, llama.normEps, llama.ropeBase], [2, false, 1e-5, 500000]);
});

test('hf import: tokenizers sortednet cannot represent are refused by name', () => {
  const bpe = (over: object) =>
    JSON.stringify({
      model: { type: 'BPE', vocab: {}, merges: [] },
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true },
      ...over,
    });
  assert.throws(
    () =>
      hfTokenizer(
        bpe({
          pre_tokenizer: { type: 'Metaspace', replacement: '▁' },
          model: { type: 'BPE', byte_fallback: true },
        }),
        'tokenizer.json',
        32000,
      ),
    /cannot be carried over: byte_fallback \(SentencePiece-style BPE\); pre_tokenizer Metaspace/,
  );
  assert.throws(
    () => hfTokenizer(bpe({ pre_tokenizer: { type: 'Sequence', pretokenizers: [] } }), 'tokenizer.json', 10),
    /pre_tokenizer Sequence/,
  );
  assert.throws(
    () => hfTokenizer(bpe({ model: { type: 'Unigram' } }), 'tokenizer.json', 10),
    /model type Unigram/,
  );
});

test('safetensors: F16 and BF16 tensors are read as float32 when asked', () => {
  // 1.5 in F16 = 0x3e00, −2 = 0xc000, 2^-24 (subnormal) = 0x0001; 1.5 in BF16 = 0x3fc0.
  const header = JSON.stringify({
    a: { dtype: 'F16', shape: [3], data_offsets: [0, 6] },
    b: { dtype: 'BF16', shape: [1], data_offsets: [6, 8] },
  });
  const h = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + h.length + 8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(h.length), true);
  bytes.set(h, 8);
  const body = new DataView(bytes.buffer, 8 + h.length);
  [0x3e00, 0xc000, 0x0001, 0x3fc0].forEach((v, i) => body.setUint16(2 * i, v, true));
  assert.throws(() => decodeSafetensors(bytes, 'x'), /dtype F16; only F32, I32 and I64 are supported/);
  const { tensors } = decodeSafetensors(bytes, 'x', { widen: true });
  assert.deepEqual([...tensors.get('a')!.data], [1.5, -2, 2 ** -24]);
  assert.deepEqual([...tensors.get('b')!.data], [1.5]);
});

test('sortednet import: the CLI writes a run folder that loads as an LM', async (t) => {
  if (torchSkip) return t.skip(torchSkip);
  const folder = join(dir, 'hf-cli');
  runPython(['-m', 'sortednet_torch.hf', 'write', '--kind', 'llama-gqa', '--out', folder, '--seed', '4']);
  const run = join(dir, 'run-cli');
  const log = console.log;
  const lines: string[] = [];
  console.log = (s: string) => lines.push(s);
  try {
    assert.equal(await main(['import', '--hf', folder, '--out', run, '--grid', 'depth=1,2,3;heads=2,4']), 0);
  } finally {
    console.log = log;
  }
  assert.match(
    lines.join('\n'),
    /imported LlamaForCausalLM: 3 layers, dim 64, 4 heads \(2 key\/value heads\)/,
  );
  const c = readRunJson(run);
  assert.deepEqual(c.grid, { depth: [1, 2, 3], heads: [2, 4] });
  assert.ok(existsSync(join(run, 'checkpoints')));
  assert.equal(JSON.parse(readFileSync(join(run, 'import.json'), 'utf8')).architecture, 'LlamaForCausalLM');
  const { model, tokenizer } = await loadLm(run);
  assert.equal(tokenizer.decode(tokenizer.encode(' the heron')), ' the heron');
  model.dispose();
  // A second import into the same folder is refused; a grid the model cannot take is refused.
  assert.throws(() => importHuggingFace(folder, run), /already holds a checkpoint/);
  assert.throws(
    () => importHuggingFace(folder, join(dir, 'run-bad-grid'), { grid: { heads: [1, 4] } }),
    /heads 1 .* not a whole number of key\/value groups/,
  );
  assert.ok(!existsSync(join(dir, 'run-bad-grid')), 'a failed import leaves no folder behind');
});
