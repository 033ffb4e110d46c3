/** JSON run configs: partial model specs resolved from the family's preset, checked fields; partition/compact/extract folders. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quiet } from './cli_helpers.js';
import { parseRunConfig } from '../src/run/run_config.js';

const dir = mkdtempSync(join(tmpdir(), 'sortednet-specs-'));

function config(name: string, c: object): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(c));
  return path;
}

const runJson = (run: string) => JSON.parse(readFileSync(join(run, 'run.json'), 'utf8'));
const tiny = '--steps 2 --gacc 1 --batch-size 8 --no-eval';

test('a partial pad-resnet spec takes the preset, fitted to the data; run.json holds the full config', async () => {
  const run = join(dir, 'pad');
  const cfg = config('pad.json', {
    model: { family: 'pad-resnet', config: { conv: 'dynamic', kernels: 2 } },
    data: { name: 'mnist', trainSubset: 32, testSubset: 16 },
  });
  assert.equal(await quiet(`train --run ${run} --config ${cfg} ${tiny}`), 0);
  const c = runJson(run);
  assert.equal(c.model.family, 'pad-resnet');
  const m = c.model.config;
  assert.deepEqual(
    [m.conv, m.kernels, m.reduction, m.lambdaMode, m.inChannels, m.imageSize, m.classes, m.stem],
    ['dynamic', 2, 4, 'both', 1, 28, 10, 16],
  );
  assert.deepEqual(
    m.stages.map((s: { out: number }[]) => s.map((b) => b.out)),
    [
      [16, 16],
      [32, 32],
      [64, 64],
    ],
  );
  assert.deepEqual(c.grid, { depth: [3, 4, 5, 6], width: [0.5, 1] }, "the preset's grid");
  // The recorded config is complete: resuming rebuilds the same model from it.
  assert.equal(await quiet(`train --run ${run} --resume --steps 3 --no-eval`), 0);
  assert.deepEqual(runJson(run).model, c.model);
});

test('a partial moe-transformer spec: vocabulary and length from the token data, headDim from dim', async () => {
  const run = join(dir, 'moe');
  const cfg = config('moe.json', {
    model: { family: 'moe-transformer', config: { ffnMode: 'moe', dim: 16 } },
    data: { name: 'spamassassin', trainSubset: 32, testSubset: 16 },
  });
  assert.equal(await quiet(`train --run ${run} --config ${cfg} ${tiny}`), 0);
  const m = runJson(run).model.config;
  assert.deepEqual(
    [m.ffnMode, m.dim, m.headDim, m.heads, m.experts, m.topK, m.vocab, m.maxLen, m.classes, m.task, m.arch],
    ['moe', 16, 4, 4, 8, 2, 257, 128, 2, 'classify', 'gpt'],
  );
});

test('bad run configs name the field, the file and what is expected', async () => {
  const bad = (c: object) => () => parseRunConfig(JSON.stringify(c), 'bad.json');
  assert.throws(
    bad({ model: { family: 'pad-resnet', config: { conv: 'pad', kernel: 2 } } }),
    /config bad\.json: model\.config: unknown field 'kernel'; known: .*kernels/,
  );
  assert.throws(
    bad({ model: { family: 'pad-resnet', config: { kernels: '2' } } }),
    /bad\.json: model\.config\.kernels: expected number, got string/,
  );
  assert.throws(
    bad({ model: { family: 'pad-resnet', config: { conv: 'dyn' } } }),
    /model\.config\.conv: 'dyn' is not one of 'static', 'dynamic', 'pad'/,
  );
  assert.throws(bad({ model: { family: 'padresnet' } }), /model\.family: expected one of 'mlp'/);
  assert.throws(bad({ data: 5 }), /bad\.json: data: expected object, got number/);
  assert.throws(bad({ train: { optimizer: 3 } }), /bad\.json: train\.optimizer: expected object, got number/);
  assert.throws(bad({ train: { steps: 0 } }), /train\.steps: must be a positive integer, got 0/);
  // A dataset name alone is unambiguous.
  assert.deepEqual(parseRunConfig('{"data": "fashion-mnist"}', 'ok.json').data, { name: 'fashion-mnist' });
  // Through the command line: refused before a run folder is made.
  const cfg = config('bad.json', { model: { family: 'moe-transformer', config: { expert: 4 } } });
  await assert.rejects(
    quiet(`train --run ${join(dir, 'never')} --config ${cfg}`),
    /bad\.json: model\.config: unknown field 'expert'/,
  );
  assert.ok(!existsSync(join(dir, 'never')));
});

test('partition / compact / extract: a deployed run is named as such; a failed command leaves no folder', async () => {
  const run = join(dir, 'masked');
  const cfg = config('small.json', {
    model: { family: 'pad-resnet', config: { widths: [8, 16], blocks: [1, 1] } },
    grid: { depth: [2] },
    data: { name: 'mnist', trainSubset: 32, testSubset: 16 },
  });
  assert.equal(await quiet(`train --run ${run} --config ${cfg} ${tiny}`), 0);
  assert.deepEqual(runJson(run).model.config.stages.length, 2, 'widths/blocks rebuilt the stages');
  const part = join(dir, 'part');
  const deployed = join(dir, 'deployed');
  assert.equal(
    await quiet(`partition --run ${run} --kappa 0.3 --out ${part} --calibration 1 --batch-size 8`),
    0,
  );
  assert.equal(await quiet(`compact --run ${part} --out ${deployed}`), 0);
  const again = join(dir, 'again');
  await assert.rejects(
    quiet(`compact --run ${deployed} --out ${again}`),
    new RegExp(`deployed is already compacted \\(deployed\\); compact the masked run it came from: ${part}`),
  );
  await assert.rejects(
    quiet(`partition --run ${deployed} --kappa 0.3`),
    /is already compacted \(deployed\); partition the masked run it came from/,
  );
  assert.ok(!existsSync(again) && !existsSync(`${deployed}-kappa0.3`));

  // Missing inputs: refused before the (default) out folder is made.
  const missing = join(dir, 'missing');
  await assert.rejects(quiet(`partition --run ${missing} --kappa 0.3`), /missing\/run\.json not found/);
  assert.ok(!existsSync(`${missing}-kappa0.3`));
  await assert.rejects(quiet(`compact --run ${missing} --out ${again}`), /run\.json not found/);
  await assert.rejects(quiet(`extract --run ${missing} --sub depth=2 --out ${again}`), /holds no checkpoint/);
  assert.ok(!existsSync(again));
  // --out over a file.
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  for (const line of [
    `partition --run ${run} --kappa 0.3 --out ${file}`,
    `compact --run ${part} --out ${file}`,
    `extract --run ${run} --sub depth=2 --out ${file}`,
  ])
    await assert.rejects(quiet(line), /a-file is a file, not a folder/);
  // Failures after the out folder was made remove it again.
  await assert.rejects(
    quiet(`partition --run ${run} --kappa 0.3 --out ${again} --backend nope`),
    /--backend/,
  );
  assert.ok(!existsSync(again), 'partition');
  await assert.rejects(quiet(`compact --run ${part} --out ${again} --backend nope`), /--backend/);
  assert.ok(!existsSync(again), 'compact');
  await assert.rejects(quiet(`extract --run ${run} --sub depth=9 --out ${again}`), /depth 9/);
  assert.ok(!existsSync(again), 'extract');
});
