/**
 * The ONNX decoder with a KV cache (past_key_values.N.key/value in, present.N.key/value out, as
 * transformers.js and Optimum export decoders) decodes incrementally in onnxruntime-node and
 * gives the TypeScript decoder's tokens, 50 greedy tokens one at a time.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { initEngine } from '../src/engine/backend.js';
import { Transformer } from '../src/models/transformer.js';
import { generate } from '../src/infer/generate.js';
import { argmax } from '../src/infer/sampling.js';
import { exportOnnx } from '../src/export/onnx/index.js';
import type { SubModel } from '../src/sorted/submodel.js';

before(async () => {
  await initEngine('cpu');
});

/** Greedy decoding in onnxruntime: the prompt once, then one token per call, the cache fed back. */
async function onnxGreedy(model: Transformer, sub: SubModel, prompt: number[], n: number) {
  const e = exportOnnx(model, sub, { kvCache: true });
  assert.ok(e.cache);
  const session = await ort.InferenceSession.create(e.bytes);
  assert.deepEqual(session.inputNames, ['input_ids', ...e.cache.inputs]);
  assert.deepEqual(session.outputNames, ['logits', ...e.cache.outputs]);
  const past = new Map<string, ort.Tensor>();
  e.cache.heads.forEach((h, i) => {
    for (const kv of ['key', 'value'])
      past.set(
        `past_key_values.${i}.${kv}`,
        new ort.Tensor('float32', new Float32Array(0), [1, h, 0, e.cache!.headDim]),
      );
  });
  const out: number[] = [];
  let ids = prompt;
  const V = model.config.vocab;
  for (let step = 0; step < n; step++) {
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      ...Object.fromEntries(past),
    };
    const r = await session.run(feeds);
    const logits = r.logits.data as Float32Array;
    const next = argmax(logits.subarray((ids.length - 1) * V, ids.length * V));
    out.push(next);
    assert.deepEqual(r['present.0.key'].dims.slice(2, 3), [prompt.length + step]);
    for (const [i] of e.cache.heads.entries())
      for (const kv of ['key', 'value']) past.set(`past_key_values.${i}.${kv}`, r[`present.${i}.${kv}`]);
    ids = [next];
  }
  await session.release();
  return out;
}

test('ONNX decoder with KV cache equals the TypeScript decoder over 50 greedy tokens (full model and a depth-2 sub-model)', async () => {
  const model = new Transformer(
    { task: 'lm', arch: 'gpt', vocab: 61, dim: 32, heads: 4, headDim: 8, ffn: 64, layers: 3, maxLen: 64 },
    7,
  );
  const prompt = [3, 14, 15, 9, 2, 6];
  const want = generate(model, prompt, { maxNewTokens: 50 }).tokens;
  assert.deepEqual(await onnxGreedy(model, {}, prompt, 50), want);
  const shallow = generate(model, prompt, { maxNewTokens: 50, exit: 2 }).tokens;
  assert.notDeepEqual(shallow, want);
  assert.deepEqual(await onnxGreedy(model, { depth: 2 }, prompt, 50), shallow);
  model.dispose();
});

test('the KV cache is refused where it has no meaning', () => {
  const cls = new Transformer(
    {
      task: 'classify',
      classes: 3,
      vocab: 20,
      dim: 16,
      heads: 2,
      headDim: 8,
      ffn: 32,
      layers: 2,
      maxLen: 16,
    },
    1,
  );
  assert.throws(() => exportOnnx(cls, {}, { kvCache: true }), /KV cache|--kv-cache/);
  cls.dispose();
});
