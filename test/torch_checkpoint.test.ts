/** Checkpoint folders written by PyTorch (python/sortednet_torch) as the TypeScript side reads and writes them. */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initEngine } from '../src/engine/backend.js';
import { acquireRunLock } from '../src/io/lock.js';
import { checkpointDir, listCheckpoints, loadCheckpoint, verifyRunConfig } from '../src/io/checkpoint.js';
import { parseLatest } from '../src/io/seal.js';
import { PYTHON_PACKAGE, runPython, scratch, torchSkip } from './torch_helpers.js';

before(() => initEngine('wasm'));

test(
  'PyTorch saves step folders, latest and pruning as TypeScript does; falls back, reads flat, refuses corrupt files and locked runs',
  { skip: torchSkip },
  async () => {
    const run = join(scratch('torch-ckpt-'), 'run');
    const locked = join(run, '..', 'locked');
    const lock = acquireRunLock(locked, 'test');
    const out = JSON.parse(
      runPython([join(PYTHON_PACKAGE, 'tests', 'layout_checks.py'), run, locked]),
    ) as Record<string, string | number | string[]>;
    assert.deepEqual(out.folders, ['step-000002', 'step-000003']); // the newest two are kept
    assert.equal(basename(out.resolved as string), 'step-000003');
    assert.match(out.overwrite as string, /already holds the current checkpoint \(step 3\)/);
    // PyTorch seals as TypeScript does: the kept checkpoint.json files and run.json, readable here;
    // and it refuses an edited checkpoint.json, naming the field.
    assert.deepEqual(
      parseLatest(out.latest as string, 'latest').seals.map((s) => s.path),
      ['step-000003/checkpoint.json', 'step-000002/checkpoint.json', '../run.json'],
    );
    assert.match(
      out.edited as string,
      /step-000003\/checkpoint\.json does not match its seal in .*latest: field 'step' changed since it was sealed/,
    );
    const edited = `${run}-edited`;
    assert.throws(() => checkpointDir(edited), /field 'step' \(now 2\) changed since it was sealed/);
    verifyRunConfig(edited, readFileSync(join(edited, 'run.json')));
    const runJson = readFileSync(join(edited, 'run.json'), 'utf8').replace('2000', '2001');
    assert.throws(
      () => verifyRunConfig(edited, Buffer.from(runJson)),
      /field 'data\.trainSubset' \(now 2001\)/,
    );
    assert.equal(basename(out.fallback as string), 'step-000003'); // `latest` removed: newest complete
    assert.equal(out.flat, 3);
    lock.release();
    assert.match(out.locked as string, new RegExp(`is in use by PID ${process.pid} on .* \\(test, since`));
    assert.equal(out.lockFile, true);
    assert.equal(out.lockReleased, true);
    assert.match(out.corrupt as string, /model\.safetensors does not match checkpoint\.json/);
    // The TypeScript side sees the same folders and loads the PyTorch-written checkpoint.
    assert.deepEqual(
      listCheckpoints(run).map((c) => c.name),
      ['step-000002', 'step-000003'],
    );
    assert.equal(checkpointDir(run), out.fallback);
    const ck = await loadCheckpoint(join(run, 'checkpoints', 'step-000002'));
    assert.equal(ck.meta.step, 2);
    // Preprocessing and extra files (a tokenizer) travel with the weights, both ways.
    assert.deepEqual(out.extra, [{ classes: ['a', 'b'] }, '{"model": {}}']);
    assert.deepEqual(ck.meta.preprocess, { classes: ['a', 'b'] });
    assert.equal(new TextDecoder().decode(ck.extraFiles.get('tokenizer.json')), '{"model": {}}');
    assert.equal(
      JSON.parse(readFileSync(join(ck.dir, 'checkpoint.json'), 'utf8')).format,
      'sortednet-checkpoint/2',
    );
    ck.model.dispose();
  },
);

test(
  "PyTorch reads a format-1 checkpoint (BN statistics named '<subId>|<module>.mean') to its writer's logits",
  { skip: torchSkip },
  () => {
    const run = fileURLToPath(new URL('../../test/fixtures/checkpoint-v1/resnet', import.meta.url));
    const out = JSON.parse(runPython([join(PYTHON_PACKAGE, 'tests', 'format1_logits.py'), run])) as {
      saved: Record<string, number>;
      calibrated: Record<string, number>;
      counts: Record<string, number>[];
    };
    assert.deepEqual(Object.keys(out.saved).sort(), ['depth=3,width=0.5', 'full']);
    assert.deepEqual(Object.keys(out.calibrated).sort(), ['depth=2,width=0.5', 'depth=3,width=0.5', 'full']);
    for (const [part, diffs] of Object.entries({ saved: out.saved, calibrated: out.calibrated }))
      for (const [id, d] of Object.entries(diffs))
        assert.ok(d <= 1e-4, `${part} ${id}: max |diff| ${d} > 1e-4`);
    // The batch counts (format 1 kept them in the metadata) arrive too.
    assert.deepEqual(out.counts, [
      { 'depth=3,width=0.5': 2, full: 2 },
      { 'depth=2,width=0.5': 3, 'depth=3,width=0.5': 2, full: 3 },
    ]);
  },
);
