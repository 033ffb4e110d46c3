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
import { loadServedModel } from '../src/serve/load.js';
import { createServer as createModelServer } from '../src/serve/server.js';
import { cli, cliErr, trainMnistMlp, writePlantCsv } from './deploy_fixture.js';

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

/** An MNIST test image as a PNG a person would have: `style` of the digit's strokes and background. */
function digitPng(i: number, style: 'white-on-black' | 'black-on-white' | 'black-on-transparent'): Buffer {
  const png = new PNG({ width: 28, height: 28 });
  for (let p = 0; p < 784; p++) {
    const v = Math.round(raw.images[i * 784 + p] * 255);
    const rgba =
      style === 'white-on-black'
        ? [v, v, v, 255]
        : style === 'black-on-white'
          ? [255 - v, 255 - v, 255 - v, 255]
          : [0, 0, 0, v];
    png.data.set(rgba, p * 4);
  }
  return PNG.sync.write(png);
}

test('ordinary images: dark strokes on white are inverted (with a note), transparency composited, as the training images', async () => {
  // MNIST test images the model gets right as they are: the same answer from every style of file.
  const right = [...Array(40).keys()];
  let checked = 0;
  for (const i of right) {
    const plain = await model.predict(image(i));
    if (plain.index !== raw.labels[i]) continue;
    const files = (['black-on-white', 'black-on-transparent'] as const).map((style) => {
      const f = join(scratch, `digit-${i}-${style}.png`);
      writeFileSync(f, digitPng(i, style));
      return f;
    });
    const [onWhite, transparent] = await Promise.all(files.map((f) => model.predict(readImageFile(f))));
    assert.equal(onWhite.label, plain.label, `image ${i}, black on white`);
    assert.match(onWhite.notes?.join() ?? '', /inverted: the image has a light background/);
    assert.equal(transparent.label, plain.label, `image ${i}, black on transparent`);
    assert.match(transparent.notes?.join() ?? '', /transparency composited/);
    // The same pixels as the MNIST image itself, to float precision.
    assert.ok(onWhite.probabilities.every((p, k) => Math.abs(p - plain.probabilities[k]) < 1e-4));
    assert.ok(transparent.probabilities.every((p, k) => Math.abs(p - plain.probabilities[k]) < 1e-4));
    // The flag keeps the image as it is.
    const kept = await model.predict(readImageFile(files[0]), { matchPolarity: false });
    assert.equal(kept.notes, undefined);
    assert.notDeepEqual(kept.probabilities, onWhite.probabilities);
    if (++checked === 3) break;
  }
  assert.equal(checked, 3, 'the model gets fewer than 3 of the first 40 test images right');
  // The command line: the same answer, the note on stderr, --no-match-polarity to turn it off.
  const f = join(scratch, 'seven.png');
  writeFileSync(f, digitPng(0, 'black-on-white'));
  const want = await model.predict(image(0));
  const r = await cliErr(['predict', '--run', run, '--input', f]);
  assert.match(r.out, new RegExp(`seven\\.png: ${want.label} `));
  assert.match(
    r.err,
    /notice: .*seven\.png: inverted: the image has a light background, the model was trained on dark ones/,
  );
  const off = await cliErr(['predict', '--run', run, '--input', f, '--no-match-polarity']);
  assert.equal(off.err, '');
});

test('image files: read by their content; a missing, broken or foreign file says so', async () => {
  const asJpg = join(scratch, 'digit-really-a-png.jpg');
  writeFileSync(asJpg, readFileSync(pngPath));
  assert.deepEqual(readImageFile(asJpg).pixels, readImageFile(pngPath).pixels);
  const html = join(scratch, 'page.png');
  writeFileSync(html, '<!doctype html><html><body>not an image</body></html>');
  assert.throws(() => readImageFile(html), /page\.png is not a PNG\/JPEG image \(it is an HTML page\)/);
  const broken = join(scratch, 'broken.png');
  writeFileSync(broken, readFileSync(pngPath).subarray(0, 60));
  assert.throws(() => readImageFile(broken), /broken\.png is not a PNG\/JPEG image \(broken PNG data/);
  const missing = join(scratch, 'nowhere.png');
  assert.throws(
    () => readImageFile(missing),
    (e: Error) => e.message === `${missing}: no such file` && !e.message.includes('ENOENT'),
  );
  await assert.rejects(cli(['predict', '--run', run, '--input', missing]), /nowhere\.png: no such file$/);
});

test('one model, sub-model per call: budgets pick as pick does, switching allocates nothing', async () => {
  const subs = model.subModels();
  assert.equal(subs.length, 16);
  assert.ok(subs.every((s) => s.accuracy !== undefined && s.flops > 0 && s.params > 0));
  const budget = { maxFlops: subs[subs.length - 1].flops / 3 };
  assert.equal(model.select(budget).id, pickSubModel(subs, budget)!.id);
  assert.equal((await model.predict(image(0), budget)).subModel, pickSubModel(subs, budget)!.id);
  assert.equal(model.select({}).id, 'depth=4,width=1');
  // Warm: each sub-model's first run folds its BatchNorm statistics into a scale and shift per channel (as
  // many values as the statistics); after that, switching allocates nothing.
  for (const s of subs) await model.predict(image(0), { sub: s.sub });
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

test('loadModel(URL) over a static host that answers missing files with its page (HTML, status 200)', async () => {
  // As `vite preview` and single-page-app hosts do: every unknown path is index.html.
  const server: Server = createServer((req, res) => {
    try {
      const body = readFileSync(join(scratch, decodeURIComponent(new URL(req.url!, 'http://x').pathname)));
      res.setHeader('Content-Type', 'application/octet-stream');
      res.end(body);
    } catch {
      res.setHeader('Content-Type', 'text/html');
      res.end('<!doctype html><html><body>the app</body></html>');
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    // The run folder: eval.json lies beside checkpoints/, not in the step folder (whose probe gets HTML).
    const m = await loadModel(`${base}/run/`);
    assert.deepEqual(
      m.subModels().map((s) => s.accuracy),
      model.subModels().map((s) => s.accuracy),
    );
    assert.ok(m.subModels().every((s) => typeof s.accuracy === 'number'));
    m.dispose();
    // Without eval.json anywhere: no accuracies, and still a model.
    const bare = join(scratch, 'bare');
    cpSync(checkpointDir(run), bare, { recursive: true });
    const b = await loadModel(`${base}/bare/`);
    assert.ok(b.subModels().every((s) => s.accuracy === undefined));
    assert.equal((await b.predict(image(0))).label, (await model.predict(image(0))).label);
    b.dispose();
    // No checkpoint at all: the page is not taken for one.
    await assert.rejects(
      loadModel(`${base}/nothing/`),
      /no checkpoint at .*nothing: neither checkpoints\/latest nor checkpoint\.json/,
    );
  } finally {
    server.close();
  }
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
  // Without --label-column the training label column is used when the file has it, and said so.
  const said = await cliErr(['predict', '--run', plantRun, '--csv', csv]);
  assert.equal(said.code, 0);
  assert.match(said.err, /reporting against its column 'Grade', the run's training label column/);
  assert.match(said.out, new RegExp(`accuracy ${accuracy.toFixed(2)}% on 600 labelled rows`));
  // A label value the model never saw counts as wrong, with a warning naming it.
  const odd = join(scratch, 'odd.csv');
  writeFileSync(odd, readFileSync(csv, 'utf8').replace(/,mid\n/, ',medium\n'));
  const warned = await cliErr(['predict', '--run', plantRun, '--csv', odd]);
  assert.match(
    warned.err,
    /warning: .*odd\.csv: label value\(s\) medium are no class of the model \(high, low, mid\)/,
  );
  // A header and no rows: said so, for train and predict alike (an error: exit code 1).
  const empty = join(scratch, 'empty.csv');
  writeFileSync(empty, '"Temp (C)",pressure,noise,"flow, l/s",rand,Grade\n');
  await assert.rejects(
    cli(['predict', '--run', plantRun, '--csv', empty]),
    /empty\.csv' has a header .* but no data rows/,
  );
  await assert.rejects(
    cli(['train', '--run', join(scratch, 'e'), '--data', empty, '--label-column', 'Grade']),
    /no data rows/,
  );

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

test('serve: JSON inputs are pixels in [0, 1], answered as `predict --input` answers the same pixels as a PNG (an all-black one too)', async () => {
  const blackPath = join(scratch, 'black.png');
  const black = new PNG({ width: 28, height: 28 });
  for (let p = 0; p < 784; p++) black.data.set([0, 0, 0, 255], p * 4);
  writeFileSync(blackPath, PNG.sync.write(black));
  const server = createModelServer(await loadServedModel(run));
  try {
    const cases: [string, number[]][] = [
      // digit.png holds round(255 · pixel): the JSON sends those values over 255.
      [pngPath, Array.from(raw.images.subarray(0, 784), (v) => Math.round(v * 255) / 255)],
      [blackPath, new Array<number>(784).fill(0)],
    ];
    for (const [file, pixels] of cases) {
      const res = await server.app.inject({
        method: 'POST',
        url: '/predict',
        payload: { inputs: [pixels], probabilities: true },
      });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json<{ sub: string; predictions: { label: string }[]; probabilities: number[][] }>();
      const want = await model.predict(readImageFile(file), { sub: body.sub });
      assert.equal(body.predictions[0].label, want.label, file);
      body.probabilities[0].forEach((p, k) =>
        assert.ok(
          Math.abs(p - want.probabilities[k]) < 1e-5,
          `${file}: class ${k}: ${p} vs ${want.probabilities[k]}`,
        ),
      );
    }
  } finally {
    await server.app.close();
  }
});
