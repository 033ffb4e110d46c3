/**
 * The PyTorch package's side of sorted fine-tuning from a pre-trained LM:
 * - it writes a sortednet LM as a Hugging Face folder (python/sortednet_torch/hf_export.py:
 *   LlamaForCausalLM with grouped-query attention and an untied head, GPT2LMHeadModel), which
 *   `sortednet import --hf` reads back with the package model's next-token logits (1e-4), and which
 *   the package's reference of the Hugging Face modelling code (hf.py) computes the same;
 * - its trainer's `--init-from` (a Hugging Face folder or a sortednet run) starts from exactly the
 *   source's weights (a step at learning rate 0 leaves them bit for bit) and fine-tunes every exit;
 * - its BPE encoder (which reads the training corpus through the model's tokenizer.json) gives the
 *   TypeScript tokenizer's ids.
 * Without PyTorch these skip, saying why.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initEngine } from '../src/engine/backend.js';
import type { TransformerConfig } from '../src/models/index.js';
import { importHuggingFace } from '../src/run/hf_import.js';
import { loadLm } from '../src/infer/load_lm.js';
import { trainBpe } from '../src/tokenizer/train_bpe.js';
import { BpeTokenizer } from '../src/tokenizer/bpe.js';
import { PYTHON_PACKAGE, runPython, scratch, torchSkip } from './torch_helpers.js';
import { logitsOf, maxDiff } from './lm_helpers.js';

const dir = scratch('hf-export-');
const PROMPT = [5, 70, 120, 3, 200, 17, 9, 42];

before(async () => {
  await initEngine('wasm');
});

// vocab 265: the package's tiny byte-level tokenizer (256 bytes, 8 merges, <|endoftext|>).
const CONFIGS: Record<string, TransformerConfig> = {
  'llama, grouped-query attention, untied head': {
    task: 'lm',
    arch: 'llama',
    vocab: 265,
    dim: 48,
    heads: 6,
    kvHeads: 2,
    headDim: 8,
    ffn: 64,
    layers: 3,
    maxLen: 64,
    tiedHead: false,
    normEps: 1e-2,
    ropeBase: 50000,
  },
  'gpt-2': {
    task: 'lm',
    arch: 'gpt',
    vocab: 265,
    dim: 32,
    heads: 4,
    headDim: 8,
    ffn: 64,
    layers: 2,
    maxLen: 64,
  },
};

for (const [name, config] of Object.entries(CONFIGS)) {
  test(
    `hf export (${name}): sortednet import --hf gives the package model's logits within 1e-4`,
    { skip: torchSkip },
    async () => {
      const folder = join(dir, `hf-${config.arch}`);
      const out = JSON.parse(
        runPython([
          join(PYTHON_PACKAGE, 'tests', 'hf_export_check.py'),
          JSON.stringify(config),
          folder,
          PROMPT.join(','),
          '7',
        ]),
      ) as { logits: number[][]; reference: number };
      // The Hugging Face modelling code's reference reads the folder as transformers would.
      assert.ok(out.reference < 1e-4, `reference vs package: ${out.reference}`);
      const hfConfig = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      assert.deepEqual(hfConfig.architectures, [
        config.arch === 'llama' ? 'LlamaForCausalLM' : 'GPT2LMHeadModel',
      ]);
      const run = join(dir, `run-${config.arch}`);
      importHuggingFace(folder, run);
      const { model } = await loadLm(run);
      assert.deepEqual(
        { ...model.config, ropeScaling: undefined },
        { ...model.config, ...config, ropeScaling: undefined },
        'the imported config is the exported one',
      );
      const diff = maxDiff(logitsOf(model, PROMPT), out.logits);
      assert.ok(diff < 1e-4, `max |logit difference| ${diff}`);
      model.dispose();
    },
  );
}

test(
  'python --init-from: a Hugging Face folder or a sortednet run; step-0 weights are the source',
  { skip: torchSkip },
  async () => {
    const hf = join(dir, 'hf-src');
    runPython(['-m', 'sortednet_torch.hf', 'write', '--kind', 'llama-gqa', '--out', hf, '--seed', '2']);
    const corpus = join(dir, 'corpus.txt');
    writeFileSync(corpus, 'The state of the union is strong; the Congress meets in 1790. '.repeat(60));
    const config = (lr: number, strategy: string) => {
      const f = join(dir, `cfg-${lr}-${strategy}.json`);
      const train = {
        strategy,
        steps: 2,
        batchSize: 4,
        gAcc: 3,
        warmupSteps: 0,
        optimizer: { kind: 'adamw', lr },
      };
      writeFileSync(f, JSON.stringify({ train }));
      return f;
    };
    const train = (run: string, src: string, lr: number, strategy = 'sorted') =>
      runPython([
        ...['-m', 'sortednet_torch.train', '--run', run, '--init-from', src, '--data', `text:${corpus}`],
        ...['--config', config(lr, strategy), '--seq-len', '16', '--quiet'],
      ]);
    const check = (src: string, run: string) =>
      JSON.parse(runPython([join(PYTHON_PACKAGE, 'tests', 'init_from_check.py'), src, run])) as {
        step: number;
        max: number;
        changed: number;
        parameters: number;
        tokenizer: boolean;
      };
    // Learning rate 1e-30 (0 is refused, as in TypeScript): updates far below float32 resolution,
    // so the weights after two steps are exactly those the trainer started from, the source's.
    train(join(dir, 'soft-lr0'), hf, 1e-30);
    const still = check(hf, join(dir, 'soft-lr0'));
    assert.equal(still.step, 2);
    assert.equal(still.max, 0, `weights differ from the source by ${still.max}`);
    assert.ok(still.tokenizer, 'the tokenizer is carried into the run');
    // A real step moves every parameter (every exit is trained through the shared head).
    train(join(dir, 'soft'), hf, 1e-3);
    const moved = check(hf, join(dir, 'soft'));
    assert.equal(moved.changed, moved.parameters, JSON.stringify(moved));
    // From a sortednet run (the TypeScript import of the same folder), and read back by TypeScript.
    const imported = join(dir, 'imported');
    importHuggingFace(hf, imported);
    train(join(dir, 'soft-run-lr0'), imported, 1e-30, 'full-only');
    assert.equal(check(imported, join(dir, 'soft-run-lr0')).max, 0);
    const a = await loadLm(imported);
    const b = await loadLm(join(dir, 'soft-run-lr0'));
    assert.ok(maxDiff(logitsOf(a.model, PROMPT), logitsOf(b.model, PROMPT)) === 0);
    assert.equal(b.tokenizer.vocabSize, a.tokenizer.vocabSize);
    a.model.dispose();
    b.model.dispose();
    // A run that exists is never overwritten.
    assert.throws(
      () => train(join(dir, 'soft'), hf, 1e-3),
      /already holds a checkpoint; --init-from starts a new run/,
    );
  },
);

test("python BPE encoder: the TypeScript tokenizer's ids", { skip: torchSkip }, () => {
  const text =
    "It's the people's Congress: 1,234 dollars in 1812 — naïve café, Ünïcode ½ ², tabs\tand  double  spaces\n\n" +
    "they'll we've I'm you'd <|endoftext|>Next document!!  ok? 東京 2021年\u00a0nbsp\u2028line";
  const tok = trainBpe([text.repeat(3), 'the state of the union the state '.repeat(20)], { vocabSize: 300 });
  const file = join(dir, 'tokenizer.json');
  writeFileSync(file, tok.toHuggingFaceJson());
  const again = BpeTokenizer.fromHuggingFaceJson(readFileSync(file, 'utf8'));
  const py = JSON.parse(
    runPython([
      '-c',
      'import json,sys; from sortednet_torch.bpe import BpeTokenizer; ' +
        't=BpeTokenizer(open(sys.argv[1]).read()); print(json.dumps(t.encode(sys.argv[2])))',
      file,
      text,
    ]),
  ) as number[];
  assert.deepEqual(py, again.encode(text));
  assert.ok(py.length < Buffer.byteLength(text), 'merges were applied');
});
