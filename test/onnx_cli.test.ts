/** `sortednet export-onnx` on a saved run: the file runs in onnxruntime-node and matches the run's sub-model. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { PNG } from 'pngjs';
import { loadModel } from '../src/node.js';
import { initEngine } from '../src/engine/backend.js';
import { saveCheckpoint } from '../src/io/checkpoint.js';
import { IMAGE, tinyResNet } from './serve_fixture.js';

const CLI = fileURLToPath(new URL('../../bin/sortednet.js', import.meta.url));
let dir: string;

before(async () => {
  await initEngine('cpu');
  dir = mkdtempSync(join(tmpdir(), 'sortednet-onnx-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** The ONNX file's logits for `x` equal `want` (tfjs's) to 1e-4. */
async function assertOnnxLogits(file: string, x: tf.Tensor, want: ArrayLike<number>): Promise<void> {
  const session = await ort.InferenceSession.create(readFileSync(file));
  const got = (await session.run({ input: new ort.Tensor('float32', x.dataSync() as Float32Array, x.shape) }))
    .logits.data as Float32Array;
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(want[i] - got[i]));
  assert.ok(diff <= 1e-4, `max |onnx − tfjs| ${diff}`);
  await session.release();
}

test('export-onnx: --run --sub --out writes a file onnxruntime runs, equal to the sub-model (1e-4)', async () => {
  const { model, grid } = tinyResNet();
  saveCheckpoint(dir, { model, grid: grid.spec, step: 0, seed: 7 });
  const sub = grid.entries[0];
  const file = join(dir, 'small.onnx');
  const said = execFileSync(
    process.execPath,
    [CLI, 'export-onnx', '--run', dir, '--sub', sub.id, '--out', file],
    {
      encoding: 'utf8',
    },
  );
  assert.match(said, new RegExp(`sub-model ${sub.id}, opset 17`));
  const x = tf.randomNormal([2, IMAGE, IMAGE, 1], 0, 1, 'float32', 9);
  const want = tf.tidy(() => model.forward(x, sub.sub, { mode: 'eval', key: sub.id }).dataSync());
  await assertOnnxLogits(file, x, want);
  assert.throws(
    () =>
      execFileSync(
        process.execPath,
        [CLI, 'export-onnx', '--run', dir, '--out', join(dir, 'x.onnx'), '--sub', 'depth=9'],
        { stdio: 'pipe' },
      ),
    /depth 9 is outside/,
  );
});

test("'full' is one sub-model everywhere: export-onnx's default, predict's { sub: 'full' } and --sub full", async () => {
  // A run whose BatchNorm statistics exist only under the grid's ids, as after training and eval.
  const { model, grid } = tinyResNet();
  const run = join(dir, 'evaluated');
  saveCheckpoint(run, { model, grid: grid.spec, step: 0, seed: 7 });
  const file = join(run, 'full.onnx');
  const said = execFileSync(process.execPath, [CLI, 'export-onnx', '--run', run, '--out', file], {
    encoding: 'utf8',
  });
  assert.match(said, new RegExp(`sub-model ${grid.largest.id}, opset 17`));
  const x = tf.randomNormal([2, IMAGE, IMAGE, 1], 0, 1, 'float32', 9);
  const want = tf.tidy(() =>
    model.forward(x, grid.largest.sub, { mode: 'eval', key: grid.largest.id }).dataSync(),
  );
  await assertOnnxLogits(file, x, want);

  const deployed = await loadModel(run, { backend: 'cpu' });
  const image = { width: IMAGE, height: IMAGE, data: new Float32Array(IMAGE * IMAGE).fill(0.5) };
  for (const sub of ['full', {}] as const) {
    const p = await deployed.predict(image, { sub });
    assert.equal(p.subModel, grid.largest.id);
    assert.deepEqual(
      p.probabilities,
      (await deployed.predict(image, { sub: grid.largest.id })).probabilities,
    );
  }
  const png = join(run, 'grey.png');
  const img = new PNG({ width: IMAGE, height: IMAGE });
  for (let p = 0; p < IMAGE * IMAGE; p++) img.data.set([128, 128, 128, 255], p * 4);
  writeFileSync(png, PNG.sync.write(img));
  const printed = execFileSync(
    process.execPath,
    [CLI, 'predict', '--run', run, '--input', png, '--sub', 'full'],
    {
      encoding: 'utf8',
    },
  );
  assert.match(printed, new RegExp(`sub-model ${grid.largest.id}`));
  deployed.dispose();
});
