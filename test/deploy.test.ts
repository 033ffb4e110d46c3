/**
 * Deployment: the package's README example, loadModel from every kind of source, predictions equal
 * to the trained model's on raw inputs, sub-model choice per call without copies, and `sortednet
 * predict` on a user's CSV whose label column has its own name.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { PNG } from 'pngjs';
import {
  loadModel,
  loadCheckpoint,
  loadDataset,
  pickSubModel,
  readImageFile,
  type DeployedModel,
} from '../src/node.js';
import { checkpointDir } from '../src/io/checkpoint.js';
import { cli, trainMnistMlp, writePlantCsv } from './deploy_fixture.js';

let scratch: string;
let run: string;
let raw: { images: Float32Array; labels: Int32Array; size: number };
let model: DeployedModel;
let pngPath: string;

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'sortednet-deploy-'));
  run = join(scratch, 'run');
  await trainMnistMlp(run);
  // The first 200 MNIST test images as raw [0, 1] pixels, as a user would hand them over.
  const { test: t } = loadDataset('mnist', { normalise: false, testSize: 200 });
  raw = { images: t.images, labels: t.labels, size: 784 };
  model = await loadModel(run);
  // digit.png: MNIST test image 0 (a 7).
  const png = new PNG({ width: 28, height: 28 });
  for (let p = 0; p < 784; p++) png.data.set([...Array(3).fill(Math.round(raw.images[p] * 255)), 255], p * 4);
  pngPath = join(scratch, 'digit.png');
  writeFileSync(pngPath, PNG.sync.write(png));
});

after(() => {
  model?.dispose();
  rmSync(scratch, { recursive: true, force: true });
});

const image = (i: number) => ({ width: 28, height: 28, data: raw.images.subarray(i * 784, (i + 1) * 784) });

test('the README examples run as written (import from "sortednet") against a trained run', () => {
  const readme = readFileSync('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('## As a library'), readme.indexOf('## Your own data'));
  const blocks = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 2, 'the README has no js examples');
  blocks.forEach((block, i) => {
    // Inside the package folder, so that 'sortednet' resolves to this package (self-reference).
    const script = resolve('dist', `readme_example_${i}.mjs`);
    writeFileSync(
      script,
      block.replaceAll("'runs/demo'", JSON.stringify(run)).replaceAll("'digit.png'", JSON.stringify(pngPath)),
    );
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    rmSync(script);
    assert.equal(r.status, 0, `README example ${i + 1} failed:\n${block}\n${r.stderr}`);
    assert.match(r.stdout, /label|depth=/, `README example ${i + 1} printed nothing useful: ${r.stdout}`);
  });
});

test('predictions on raw pixels equal the trained model on normalised inputs, for several sub-models', async () => {
  const { model: trained, meta } = await loadCheckpoint(run);
  const mean = meta.preprocess!.mean![0];
  const std = meta.preprocess!.std![0];
  const subs = model.subModels();
  for (const s of [subs[0], subs[5], subs[subs.length - 1]]) {
    const got = await model.predictBatch(
      Array.from({ length: 200 }, (_, i) => image(i)),
      { sub: s.id },
    );
    const want = tf.tidy(() => {
      const x = tf.div(tf.sub(tf.tensor4d(raw.images, [200, 28, 28, 1]), mean), std);
      return tf.softmax(trained.forward(x, s.sub, { mode: 'eval', key: s.id })).arraySync() as number[][];
    });
    got.forEach((p, i) => {
      assert.equal(p.subModel, s.id);
      for (let k = 0; k < 10; k++)
        assert.ok(Math.abs(p.probabilities[k] - want[i][k]) < 1e-5, `${s.id} image ${i}`);
    });
  }
  // The largest sub-model is far above chance on raw MNIST pixels: preprocessing came with the checkpoint.
  const right = (await model.predictBatch(Array.from({ length: 200 }, (_, i) => image(i)))).filter(
    (p, i) => p.index === raw.labels[i],
  ).length;
  assert.ok(right > 120, `${right}/200 right`);
  trained.dispose();
});

test('`sortednet predict --input` on an image file prints its class and probability', async () => {
  const want = await model.predict(readImageFile(pngPath), { sub: 'depth=2,width=0.5' });
  const r = await cli(['predict', '--run', run, '--input', pngPath, '--sub', 'depth=2,width=0.5']);
  assert.equal(r.code, 0);
  assert.ok(r.out.includes(`${pngPath}: ${want.label} ${(100 * want.probability).toFixed(1)}%`), r.out);
  const json = await cli(['predict', '--run', run, '--input', pngPath, pngPath, '--json']);
  assert.deepEqual(
    (JSON.parse(json.out) as { input: string }[]).map((p) => p.input),
    [pngPath, pngPath],
  );
});

test('one model, sub-model per call: budgets pick as pick does, switching allocates nothing', async () => {
  const subs = model.subModels();
  assert.equal(subs.length, 16);
  assert.ok(subs.every((s) => s.accuracy !== undefined && s.flops > 0 && s.params > 0));
  const budget = { maxFlops: subs[subs.length - 1].flops / 3 };
  assert.equal(model.select(budget).id, pickSubModel(subs, budget)!.id);
  assert.equal((await model.predict(image(0), budget)).subModel, pickSubModel(subs, budget)!.id);
  assert.equal(model.select({}).id, 'depth=4,width=1');
  await model.predict(image(0), { sub: subs[0].id }); // warm
  const before = tf.memory().numTensors;
  const bytes = tf.memory().numBytes;
  for (const s of subs) await model.predict(image(1), { sub: s.sub });
  assert.equal(tf.memory().numTensors, before, 'switching sub-models left tensors behind');
  assert.equal(tf.memory().numBytes, bytes, 'switching sub-models copied weights');

  assert.throws(
    () => model.select({ maxFlops: 10 }),
    /no sub-model .* fits .*smallest is depth=1,width=0.25/,
  );
  assert.throws(() => model.select({ maxLatencyMs: 1e-9 }), /no sub-model/);
  await assert.rejects(model.predict(new Float32Array(5)), /input 0: 5 values, the model takes 784/);
  await assert.rejects(model.predict(image(0), { sub: 'depth=9' }), /depth 9 is outside 1\.\.4/);
  await assert.rejects(
    model.predict({ width: 28, height: 28, data: new Uint8Array(10) }),
    /do not make a 28×28 image/,
  );
  const measured = await model.measureLatency({ reps: 2 });
  assert.ok(measured.every((s) => s.latencySource === 'this device' && s.latencyMs! > 0));
});

test('loadModel: run folder, step-folder layout, .tar, URL (run and checkpoint folder) and bytes give one model', async () => {
  // The run is in step folders (checkpoints/latest names the current one); a flat copy of its
  // checkpoint folder with eval.json beside it is the other layout.
  const flat = join(scratch, 'flat');
  cpSync(checkpointDir(run), flat, { recursive: true });
  cpSync(join(run, 'eval.json'), join(flat, 'eval.json'));
  const tar = join(scratch, 'run.tar');
  assert.equal(spawnSync('tar', ['-cf', tar, '-C', scratch, 'run']).status, 0);
  const files = new Map(readdirSync(flat).map((f) => [f, new Uint8Array(readFileSync(join(flat, f)))]));
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    try {
      res.end(readFileSync(join(scratch, decodeURIComponent(req.url!))));
    } catch {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const want = (await model.predict(image(3), { sub: 'depth=2,width=0.5' })).probabilities;
  try {
    for (const source of [flat, tar, readFileSync(tar), files, `${base}/run`, `${base}/flat/`]) {
      const m = await loadModel(source);
      const got = await m.predict(image(3), { sub: 'depth=2,width=0.5' });
      assert.deepEqual(got.probabilities, want, `source ${typeof source === 'string' ? source : 'bytes'}`);
      assert.equal(m.subModels()[0].accuracy, model.subModels()[0].accuracy);
      m.dispose();
    }
  } finally {
    server.close();
  }
  assert.ok(requests > 0);
  // A damaged blob is named, not loaded.
  const bad = join(scratch, 'bad-run');
  cpSync(run, bad, { recursive: true });
  const weightsFile = join(checkpointDir(bad), 'model.safetensors');
  const weights = readFileSync(weightsFile);
  weights[weights.length - 1] ^= 1;
  writeFileSync(weightsFile, weights);
  await assert.rejects(loadModel(bad), /model\.safetensors does not match checkpoint\.json/);
  await assert.rejects(loadModel(join(scratch, 'nothing')), /does not exist/);
});

test('own data: train on a CSV whose label column is called Grade (5 features), then `sortednet predict` it', async () => {
  const csv = join(scratch, 'plant.csv');
  writePlantCsv(csv);
  const plantRun = join(scratch, 'plant');
  const trained = await cli([
    'train',
    '--run',
    plantRun,
    '--data',
    csv,
    '--label-column',
    'Grade',
    '--steps',
    '150',
  ]);
  assert.equal(trained.code, 0);
  const meta = JSON.parse(readFileSync(join(checkpointDir(plantRun), 'checkpoint.json'), 'utf8'));
  assert.deepEqual(meta.preprocess.features, ['Temp (C)', 'pressure', 'noise', 'flow, l/s', 'rand']);
  assert.deepEqual(meta.preprocess.classes, ['high', 'low', 'mid']);
  assert.equal(meta.model.config.inputs, 5);

  const predicted = await cli(['predict', '--run', plantRun, '--csv', csv, '--label-column', 'Grade']);
  assert.equal(predicted.code, 0);
  const accuracy = Number(/accuracy ([\d.]+)% on 600 labelled rows/.exec(predicted.out)?.[1]);
  assert.ok(accuracy > 70, predicted.out.slice(-300));

  // New rows without labels, columns in another order: matched by name; JSON out.
  const fresh = join(scratch, 'fresh.csv');
  writeFileSync(fresh, 'rand,noise,"flow, l/s",pressure,"Temp (C)"\n0.5,0,220,-21,3.1\n0.5,0,-10,1,-0.2\n');
  const json = await cli(['predict', '--run', plantRun, '--csv', fresh, '--json', '--max-flops', '2000']);
  const rows = JSON.parse(json.out) as {
    label: string;
    probabilities: Record<string, number>;
    subModel: string;
  }[];
  assert.deepEqual(
    rows.map((r) => r.label),
    ['high', 'low'],
  );
  assert.ok(rows.every((r) => Math.abs(Object.values(r.probabilities).reduce((a, b) => a + b) - 1) < 1e-5));

  await assert.rejects(
    cli(['predict', '--run', plantRun, '--csv', fresh, '--sub', 'depth=2', '--max-flops', '5']),
    /either sub or a budget/,
  );
  writeFileSync(fresh, 'rand,noise,pressure\n1,2,3\n');
  await assert.rejects(cli(['predict', '--run', plantRun, '--csv', fresh]), /no column 'Temp \(C\)'/);
  await assert.rejects(cli(['predict', '--run', plantRun]), /either --input FILE… or --csv FILE/);
  // A dataset smaller than the batch trains with the batch cut to its size, and says so.
  const small = join(scratch, 'small.csv');
  writePlantCsv(small, 30);
  const tiny = await cli([
    'train',
    '--run',
    join(scratch, 'tiny'),
    '--data',
    small,
    '--label-column',
    '5',
    '--steps',
    '20',
  ]);
  assert.equal(tiny.code, 0);
  assert.match(tiny.out, /note: batch size 64 > 24 training examples; using 24/);
  // An image network for a row of features is refused with the reason.
  await assert.rejects(
    cli([
      'train',
      '--run',
      join(scratch, 'x'),
      '--data',
      csv,
      '--label-column',
      'Grade',
      '--model',
      'resnet-small',
    ]),
    /takes images, but .* is a row of 5 features/,
  );
});
