/**
 * The browser app end to end in a real browser (Debian's Chromium through playwright-core): a
 * sorted MNIST model trained here is exported with `sortednet web-export` (the built page, the
 * model, eval.json, samples.json) and served by a static host that answers missing files with the
 * page, as `vite preview` does. The page loads the model once, predicts a test image correctly,
 * switches sub-models with the slider (one latency per sub-model), auto mode picks one for a
 * latency target, an image file of a dark digit on white is inverted as in Node; without eval.json
 * and samples.json it still works, and without a model its controls throw nothing.
 * SORTEDNET_WEB_RUN=DIR uses a trained run instead of the quick one; SORTEDNET_WEB_SCREENSHOT=FILE
 * keeps the screenshot.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { quiet } from './cli_helpers.js';
import { PNG } from 'pngjs';
import { loadModel, readImageFile } from '../src/node.js';
import type { SampleSet } from '../src/deploy/samples_node.js';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const noBrowser = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium)`;

let scratch: string;
let runDir: string;
let site: string;
let samples: SampleSet;
let server: Server;
let browser: Browser | undefined;
const requests = new Map<string, number>();

/**
 * A static host over `root`, as `vite preview` and single-page-app hosts behave: a missing file is
 * answered with index.html and status 200; cross-origin isolated (wasm threads).
 */
function serveStatic(root: string): Promise<string> {
  const types: Record<string, string> = {
    '.html': 'text/html',
    '.js': 'text/javascript',
    '.wasm': 'application/wasm',
    '.json': 'application/json',
  };
  server?.close();
  server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.set(path, (requests.get(path) ?? 0) + 1);
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    let file = resolve(root, path.slice(1) || 'index.html');
    if (!file.startsWith(resolve(root)) || !existsSync(file) || !statSync(file).isFile())
      file = join(root, 'index.html');
    res.setHeader('Content-Type', types[extname(file)] ?? 'application/octet-stream');
    res.end(readFileSync(file));
  });
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () => ok(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  );
}

before(async () => {
  if (noBrowser) return;
  scratch = mkdtempSync(join(tmpdir(), 'sortednet-web-'));
  runDir = process.env.SORTEDNET_WEB_RUN ?? join(scratch, 'run');
  if (!process.env.SORTEDNET_WEB_RUN) {
    // A sorted MLP on MNIST, trained in seconds: 16 sub-models, well above chance.
    const args = ['train', '--run', runDir, '--model', 'mlp', '--data', 'mnist', '--steps', '60'];
    args.push('--batch-size', '64', '--gacc', '2', '--train-subset', '6000', '--test-subset', '500');
    assert.equal(await quiet(args), 0);
  }
  const build = spawnSync(
    process.execPath,
    ['node_modules/vite/bin/vite.js', 'build', '--config', 'web/vite.config.ts'],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(build.status, 0, build.stderr + build.stdout);
  // The deployable folder, as a user makes it: the built page, model/, eval.json, samples.json.
  site = join(scratch, 'site');
  assert.equal(await quiet(['web-export', '--run', runDir, '--out', site]), 0);
  samples = JSON.parse(readFileSync(join(site, 'model', 'samples.json'), 'utf8')) as SampleSet;
});

after(async () => {
  await browser?.close();
  server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** An MNIST-like image file a person would have: the sample's digit in black on white. */
function blackOnWhite(s: SampleSet['samples'][number], path: string): string {
  const png = new PNG({ width: s.width, height: s.height });
  const px = Buffer.from(s.pixels, 'base64');
  for (let p = 0; p < s.width * s.height; p++)
    png.data.set([255 - px[p], 255 - px[p], 255 - px[p], 255], p * 4);
  writeFileSync(path, PNG.sync.write(png));
  return path;
}

async function openPage(url: string) {
  browser ??= await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  const ready = () =>
    page.waitForFunction(
      () =>
        document.getElementById('status')?.dataset.state !== 'loading' &&
        document.getElementById('status')?.dataset.state !== 'busy',
      null,
      { timeout: 60_000 },
    );
  await ready();
  return { page, errors, ready };
}

test(
  'the page loads a trained model once, predicts a test image right, switches sub-models, auto picks one',
  { skip: noBrowser },
  async (t) => {
    // The known image: the first test sample the full model gets right in Node.
    const model = await loadModel(runDir);
    let known = -1;
    for (const [i, s] of samples.samples.entries()) {
      const p = await model.predict({ ...s, data: Buffer.from(s.pixels, 'base64') });
      if (p.index === s.label) {
        known = i;
        break;
      }
    }
    assert.ok(known >= 0, 'the full model gets no sample right');
    const expected = model.classes[samples.samples[known].label];
    const subs = [...model.subModels()].sort((a, b) => a.flops - b.flops || a.params - b.params);

    // The exported folder on a static host; the page finds its model at model/ by default.
    const url = await serveStatic(site);
    const { page, errors, ready } = await openPage(`${url}/`);
    assert.equal(
      await page.getAttribute('#status', 'data-state'),
      'ready',
      `${await page.textContent('#status')} ${errors.join('; ')}`,
    );
    assert.match((await page.textContent('#status')) ?? '', /wasm|WebGPU/);

    // A known test image: the largest sub-model's prediction is its class.
    await page.click(`#samples button[data-index="${known}"]`);
    await page.waitForSelector(`#prediction[data-sub="${subs[subs.length - 1].id}"]`);
    await ready();
    assert.equal(await page.getAttribute('#prediction', 'data-label'), expected);

    // The slider: the smallest sub-model becomes active, with its own measured latency.
    const slide = async (index: number) => {
      await page.$eval(
        '#slider',
        (el, v) => {
          (el as HTMLInputElement).value = String(v);
          el.dispatchEvent(new Event('input'));
        },
        index,
      );
      await page.waitForSelector(`#latency[data-sub="${subs[index].id}"]`);
      await ready();
      return Number(await page.getAttribute('#latency', 'data-ms'));
    };
    const smallMs = await slide(0);
    assert.equal(await page.getAttribute('#sub-info', 'data-sub'), subs[0].id);
    assert.equal(await page.getAttribute('#prediction', 'data-sub'), subs[0].id);
    assert.ok(smallMs > 0 && Number.isFinite(smallMs), `latency ${smallMs}`);
    assert.equal(await page.getAttribute('circle[data-active="true"]', 'data-sub'), subs[0].id);
    const largeMs = await slide(subs.length - 1);
    t.diagnostic(
      `page latency (median of 5, ${await page.textContent('#status')}): ` +
        `${subs[0].id} ${smallMs.toFixed(2)} ms, ${subs[subs.length - 1].id} ${largeMs.toFixed(2)} ms`,
    );
    assert.ok(largeMs > 0 && Number.isFinite(largeMs), `latency ${largeMs}`);
    assert.equal(await page.getAttribute('#prediction', 'data-label'), expected);

    // The accuracy curve: eval.json came with the model (a circle per evaluated sub-model).
    assert.equal(await page.locator('#curve circle').count(), subs.length);

    // Auto: a generous target picks the largest; an impossible one falls back to the smallest.
    await page.fill('#target-ms', '10000');
    await page.check('#auto');
    await page.waitForSelector('#auto-note[data-sub]');
    await ready();
    assert.equal(await page.getAttribute('#auto-note', 'data-sub'), subs[subs.length - 1].id);
    // One latency per sub-model: the auto note and the latency line show the same figure.
    assert.equal(await page.getAttribute('#latency', 'data-sub'), subs[subs.length - 1].id);
    assert.equal(
      await page.getAttribute('#latency', 'data-ms'),
      await page.getAttribute('#auto-note', 'data-ms'),
    );
    await page.fill('#target-ms', '0.000001');
    await page.dispatchEvent('#target-ms', 'change');
    await page.waitForSelector(`#auto-note[data-sub="${subs[0].id}"]`);
    await ready();
    assert.equal(await page.getAttribute('#sub-info', 'data-sub'), subs[0].id);

    // A drawing: a stroke on the pad is read back from the canvas (RGBA 280×280) and classified.
    await page.uncheck('#auto');
    await page.click('#clear');
    const pad = (await page.locator('#pad').boundingBox())!;
    await page.mouse.move(pad.x + 140, pad.y + 50);
    await page.mouse.down();
    await page.mouse.move(pad.x + 145, pad.y + 150, { steps: 8 });
    await page.mouse.move(pad.x + 140, pad.y + 230, { steps: 8 });
    await page.mouse.up();
    await page.waitForSelector('#prediction[data-input="drawing"]');
    await ready();
    assert.ok(model.classes.includes((await page.getAttribute('#prediction', 'data-label'))!));
    await page.click(`#samples button[data-index="${known}"]`);
    await page.waitForSelector(`#prediction[data-input="sample ${known}"]`);
    await ready();

    // Auto with a target between the smallest's and the largest's latency: it picks a sub-model
    // that meets it; the screenshot shows that state, as a person would look at it.
    const target = Number(((smallMs + largeMs) / 2).toFixed(2));
    await page.fill('#target-ms', String(target));
    await page.check('#auto');
    await page.waitForFunction(
      (ms) => document.getElementById('auto-note')?.textContent?.includes(`${ms} ms`),
      target,
    );
    await ready();
    assert.ok(Number(await page.getAttribute('#auto-note', 'data-ms')) <= target);
    const picked = await page.getAttribute('#auto-note', 'data-sub');
    assert.equal(await page.getAttribute('#prediction', 'data-sub'), picked);
    assert.equal(
      await page.getAttribute('#latency', 'data-ms'),
      await page.getAttribute('#auto-note', 'data-ms'),
    );
    const shot = process.env.SORTEDNET_WEB_SCREENSHOT ?? join(scratch, 'web_app.png');
    await page.screenshot({ path: shot });
    assert.ok(statSync(shot).size > 10_000);

    // An ordinary image file, a dark digit on white: inverted like in Node, with the same answer.
    await page.uncheck('#auto');
    await slide(subs.length - 1);
    const file = blackOnWhite(samples.samples[known], join(scratch, 'seven.png'));
    await page.setInputFiles('#file', file);
    await page.waitForSelector('#prediction[data-input="file seven.png"]');
    await ready();
    const inNode = await model.predict(readImageFile(file));
    assert.equal(await page.getAttribute('#prediction', 'data-label'), inNode.label);
    assert.match((await page.textContent('#notes')) ?? '', /inverted: the image has a light background/);

    // The checkpoint came over HTTP once.
    for (const f of ['checkpoint.json', 'model.safetensors', 'bn_stats.safetensors']) {
      const fetched = [...requests].filter(([path]) => path.endsWith(`/${f}`));
      assert.deepEqual(
        fetched.map(([, n]) => n),
        [1],
        `${f} fetched: ${JSON.stringify(fetched)}`,
      );
    }
    assert.deepEqual(errors, []);
    // loadModel in Node over the same host: the accuracies come along too.
    const overHttp = await loadModel(`${url}/model/`);
    assert.deepEqual(
      overHttp.subModels().map((s) => s.accuracy),
      model.subModels().map((s) => s.accuracy),
    );
    overHttp.dispose();
    model.dispose();
    await page.close();
  },
);

test(
  'the exported page without eval.json and samples.json, on a host that answers them with its page: no curve, still works',
  { skip: noBrowser },
  async () => {
    const bare = join(scratch, 'bare');
    cpSync(site, bare, { recursive: true });
    rmSync(join(bare, 'model', 'eval.json'));
    rmSync(join(bare, 'model', 'samples.json'));
    const url = await serveStatic(bare);
    const { page, errors, ready } = await openPage(`${url}/`);
    assert.equal(
      await page.getAttribute('#status', 'data-state'),
      'ready',
      (await page.textContent('#status')) ?? '',
    );
    assert.match((await page.textContent('#curve')) ?? '', /no accuracies/);
    assert.equal(await page.locator('#samples button').count(), 0);
    const trained = await loadModel(runDir);
    const subs = [...trained.subModels()].sort((a, b) => a.flops - b.flops || a.params - b.params);
    trained.dispose();
    // A drawing, then the slider and auto mode.
    const pad = (await page.locator('#pad').boundingBox())!;
    await page.mouse.move(pad.x + 140, pad.y + 50);
    await page.mouse.down();
    await page.mouse.move(pad.x + 140, pad.y + 230, { steps: 8 });
    await page.mouse.up();
    await page.waitForSelector('#prediction[data-input="drawing"]');
    await ready();
    await page.$eval('#slider', (el) => {
      (el as HTMLInputElement).value = '0';
      el.dispatchEvent(new Event('input'));
    });
    await page.waitForSelector(`#prediction[data-sub="${subs[0].id}"]`);
    await ready();
    await page.fill('#target-ms', '10000');
    await page.check('#auto');
    await page.waitForSelector(`#auto-note[data-sub="${subs[subs.length - 1].id}"]`);
    await ready();
    assert.deepEqual(errors, []);
    await page.close();
  },
);

test(
  'no model where the page looks: the status says so, and the controls throw nothing',
  { skip: noBrowser },
  async () => {
    const url = await serveStatic(site);
    const { page, errors } = await openPage(`${url}/?model=/nothing/`);
    assert.equal(await page.getAttribute('#status', 'data-state'), 'error');
    assert.match((await page.textContent('#status')) ?? '', /no checkpoint at .*nothing/);
    await page.$eval('#slider', (el) => {
      (el as HTMLInputElement).value = '0';
      el.dispatchEvent(new Event('input'));
    });
    await page.check('#auto');
    await page.fill('#target-ms', '3');
    await page.dispatchEvent('#target-ms', 'change');
    await page.waitForTimeout(300);
    assert.deepEqual(errors, []);
    await page.close();
  },
);
