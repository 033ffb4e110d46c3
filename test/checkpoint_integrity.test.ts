/**
 * Integrity of a run's JSON files: `checkpoints/latest` seals checkpoint.json and run.json, so a
 * hand edit or a flipped byte is refused naming the file and the field; `sortednet seal` accepts a
 * deliberate edit; older runs (unsealed) still load. A full disk names the file and what was kept.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../src/engine/backend.js';
import {
  checkpointDir,
  loadCheckpoint,
  readCheckpointMeta,
  saveCheckpoint,
  sealRun,
  verifyRunConfig,
  writeRunConfig,
} from '../src/io/checkpoint.js';
import { appendText } from '../src/io/atomic.js';
import { fieldSpans, parseLatest } from '../src/io/seal.js';
import { Mlp } from '../src/models/mlp.js';
import { Grid } from '../src/sorted/grid.js';
import { trainRun } from '../src/run/train_run.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { loadMnist } from '../src/data/mnist.js';
import { subset, type ImageDataset } from '../src/data/dataset.js';
import { main } from '../src/cli/main.js';
import { quiet } from './cli_helpers.js';
import { createRng } from '../src/data/random.js';
import { runChild } from '../bench/harness/train_child.js';

const fresh = (tag: string) => mkdtempSync(join(tmpdir(), `sortednet-seal-${tag}-`));

let data: ImageDataset;
before(async () => {
  await initEngine('cpu');
  data = subset(loadMnist().train, 64, 3);
});

const RUN_JSON = {
  model: 'mlp',
  data: { name: 'mnist', trainSubset: 2000, testSubset: 100 },
  train: { steps: 30, batchSize: 16 },
};

/** A run folder as `train` leaves it: run.json, then two checkpoints (30 steps, saved at 20 and 30). */
function sealedRun(tag: string): string {
  const runDir = fresh(tag);
  mkdirSync(runDir, { recursive: true });
  writeRunConfig(runDir, JSON.stringify(RUN_JSON, null, 2) + '\n');
  const model = new Mlp({ inputs: 4, hidden: [3], classes: 2 }, 1);
  const preprocess = { mean: [0.1306604762738429], std: [0.30810780717887876], classes: ['0', '1'] };
  for (const step of [20, 30]) saveCheckpoint(runDir, { model, grid: {}, step, seed: 1, preprocess });
  return runDir;
}

const edit = (path: string, from: string, to: string) => {
  const text = readFileSync(path, 'utf8');
  assert.ok(text.includes(from), `${path} holds ${from}`);
  writeFileSync(path, text.replace(from, to));
};

const quietly = <T>(fn: () => T): [T, string[]] => {
  const said: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => said.push(m);
  try {
    return [fn(), said];
  } finally {
    console.warn = warn;
  }
};

test('checkpoint.json is sealed by latest: an edit of step or of the normalisation is refused, naming the file and the field', async () => {
  const runDir = sealedRun('ckpt');
  const latest = parseLatest(readFileSync(join(runDir, 'checkpoints', 'latest'), 'utf8'), 'latest');
  assert.equal(latest.name, 'step-000030');
  assert.deepEqual(
    latest.seals.map((s) => s.path),
    ['step-000030/checkpoint.json', 'step-000020/checkpoint.json', '../run.json'],
  );
  const meta = join(runDir, 'checkpoints', 'step-000030', 'checkpoint.json');
  const original = readFileSync(meta);
  edit(meta, '"step": 30', '"step": 20');
  assert.throws(
    () => readCheckpointMeta(runDir),
    /step-000030\/checkpoint\.json does not match its seal in .*latest: field 'step' \(now 20\) changed since it was sealed; not loading\. If you edited it on purpose, run 'sortednet seal --run .*' to accept the edit/,
  );
  writeFileSync(meta, original);
  edit(meta, '0.1306604762738429', '0.9306604762738429');
  await assert.rejects(
    loadCheckpoint(runDir),
    /checkpoint\.json does not match its seal .*field 'preprocess\.mean' \(now \[0\.93/,
  );
  // The older kept folder is sealed too (evaluating it with --run .../step-000020).
  writeFileSync(meta, original);
  edit(join(runDir, 'checkpoints', 'step-000020', 'checkpoint.json'), '"seed": 1', '"seed": 2');
  assert.throws(() => checkpointDir(join(runDir, 'checkpoints', 'step-000020')), /field 'seed' \(now 2\)/);
  assert.equal(readCheckpointMeta(runDir).step, 30);
});

test('run.json is sealed by latest: trainSubset 2000 → 2001 is refused naming data.trainSubset; seal accepts a deliberate edit', () => {
  const runDir = sealedRun('run');
  const path = join(runDir, 'run.json');
  verifyRunConfig(runDir, readFileSync(path));
  edit(path, '"trainSubset": 2000', '"trainSubset": 2001');
  assert.throws(
    () => verifyRunConfig(runDir, readFileSync(path)),
    /run\.json does not match its seal in .*latest: field 'data\.trainSubset' \(now 2001\) changed since it was sealed/,
  );
  // A save does not bless an unsealed edit: it stays refused after the next checkpoint.
  const model = new Mlp({ inputs: 4, hidden: [3], classes: 2 }, 1);
  saveCheckpoint(runDir, { model, grid: {}, step: 40, seed: 1 });
  assert.throws(() => verifyRunConfig(runDir, readFileSync(path)), /'data\.trainSubset'/);
  // Accepting the edit (what `sortednet seal` does) names what changed; then it loads.
  const ck = join(checkpointDir(runDir), 'checkpoint.json');
  edit(ck, '"seed": 1', '"seed": 7');
  const accepted = sealRun(runDir);
  assert.deepEqual(
    accepted.map((a) => [a.file, a.change]),
    [
      [ck, "field 'seed' (now 7) changed since it was sealed"],
      [path, "field 'data.trainSubset' (now 2001) changed since it was sealed"],
    ],
  );
  verifyRunConfig(runDir, readFileSync(path));
  assert.equal(readCheckpointMeta(runDir).seed, 7);
  assert.deepEqual(sealRun(runDir), []);
  // A broken checkpoint.json is never sealed.
  writeFileSync(ck, '{"format": "x"}\n');
  assert.throws(() => sealRun(runDir), /format 'x' is not/);
});

test('writeRunConfig: a run.json rewritten by --resume stays sealed; the old content is refused after', () => {
  const runDir = sealedRun('rewrite');
  const path = join(runDir, 'run.json');
  const before = readFileSync(path);
  const changed = JSON.stringify({ ...RUN_JSON, train: { ...RUN_JSON.train, steps: 60 } }, null, 2) + '\n';
  writeRunConfig(runDir, changed);
  verifyRunConfig(runDir, readFileSync(path));
  assert.throws(() => verifyRunConfig(runDir, before), /field 'train\.steps' \(now 30\)/);
});

test('latest: damaged is refused; empty or missing falls back; a one-line latest (older runs) loads with a notice', () => {
  const runDir = sealedRun('latest');
  const path = join(runDir, 'checkpoints', 'latest');
  const text = readFileSync(path, 'utf8');
  writeFileSync(path, text.replace('step-000030/checkpoint.json', 'step-000020/checkpoint.json'));
  assert.throws(
    () => checkpointDir(runDir),
    /latest is damaged \(its last line is not the hash of the lines above it\)/,
  );
  writeFileSync(path, text.slice(0, -1));
  assert.throws(() => checkpointDir(runDir), /latest is damaged \(it does not end with a newline\)/);
  writeFileSync(path, '');
  assert.match(quietly(() => checkpointDir(runDir))[0], /step-000030$/);
  writeFileSync(path, 'step-000030\n');
  const [dir, said] = quietly(() => checkpointDir(runDir));
  assert.match(dir, /step-000030$/);
  assert.match(said.join('\n'), /latest seals nothing \(an older sortednet wrote it\)/);
  // Its run.json is not checked (no seal); `seal` adds the seals.
  edit(join(runDir, 'run.json'), '2000', '2001');
  verifyRunConfig(runDir, readFileSync(join(runDir, 'run.json')));
  assert.deepEqual(
    sealRun(runDir).map((a) => a.change),
    ['sealed (it was not before)', 'sealed (it was not before)', 'sealed (it was not before)'],
  );
  assert.equal(parseLatest(readFileSync(path, 'utf8'), 'latest').seals.length, 3);
});

test('every byte of checkpoint.json, run.json and latest changed once: each change is refused', () => {
  // One changed value per byte (a seeded draw among the 255 others); bench/reliability.ts --only
  // flips tries all 255 at every byte.
  const runDir = sealedRun('flip');
  const rng = createRng(11);
  const files = {
    checkpoint: join(runDir, 'checkpoints', 'step-000030', 'checkpoint.json'),
    run: join(runDir, 'run.json'),
    latest: join(runDir, 'checkpoints', 'latest'),
  };
  const load = () => {
    checkpointDir(runDir);
    verifyRunConfig(runDir, readFileSync(files.run));
  };
  load();
  let tried = 0;
  for (const [kind, path] of Object.entries(files)) {
    const original = readFileSync(path);
    for (let i = 0; i < original.length; i++) {
      const bytes = Buffer.from(original);
      bytes[i] = (bytes[i] + 1 + rng.int(255)) % 256;
      writeFileSync(path, bytes);
      let refused = false;
      try {
        quietly(load);
      } catch {
        refused = true;
      }
      assert.ok(refused, `${kind}: byte ${i} changed ${original[i]} → ${bytes[i]} went unnoticed`);
      tried++;
    }
    writeFileSync(path, original);
  }
  load();
  assert.ok(tried > 1000, `${tried} changes tried`);
});

test('field spans: each key at depth 1 and 2, in file order', () => {
  const text = JSON.stringify({ a: 1, b: { c: [1, 2], d: 'x' }, e: [{ f: 1 }] }, null, 2) + '\n';
  assert.deepEqual(
    fieldSpans(text).map((f) => f.name),
    ['a', 'b', 'b.c', 'b.d', 'e'],
  );
});

test('a full disk while logging: the error names the file and the checkpoint kept', async () => {
  // /dev/full answers every write with ENOSPC: the kernel's own error, through the real append.
  if (!existsSync('/dev/full')) return;
  const runDir = fresh('full-log');
  const log = join(runDir, 'log.jsonl');
  const model = new Mlp({ inputs: 784, hidden: [8], classes: 10 }, 1);
  const config = resolveTrainConfig({ steps: 4, batchSize: 8, gAcc: 1, seed: 1, checkpointEvery: 2 });
  await assert.rejects(
    trainRun(runDir, model, new Grid({}, model), data, config, {
      onStep: (s) => {
        if (s.step === 3) symlinkSync('/dev/full', log + '.full');
        appendText(s.step >= 3 ? log + '.full' : log, JSON.stringify(s) + '\n');
      },
    }),
    (e: Error) => {
      assert.match(
        e.message,
        /^ENOSPC: no space left on device, write \(appending to .*log\.jsonl\.full\)\. Training stopped\. The last checkpoint, .*step-000002, is intact\. Free some space/,
      );
      return true;
    },
  );
  assert.equal(readCheckpointMeta(runDir).step, 2);
});

/** Whether this machine lets an unprivileged user mount a tmpfs (a user and mount namespace). */
const canMountTmpfs = () =>
  spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=64k none "$1"', 'sh', tmpdir()]).status ===
  0;

test('a full disk during a save (a real 300 KiB tmpfs): the save names the file and the last good checkpoint, leaves nothing half-written, and the run resumes once space is freed', async (t) => {
  if (!canMountTmpfs()) {
    t.skip('no unprivileged tmpfs mounts here (unshare -rm); /dev/full covers the log');
    return;
  }
  const reference = fresh('full-ref');
  assert.equal((await runChild([reference])).code, 0);
  // One step folder of the child's run is about 150 KiB: the first save fits, the second does not.
  const mnt = fresh('full-mnt');
  const child = join('dist', 'bench', 'harness', 'train_child.js');
  const run = join(mnt, 'run');
  const script = [
    `mount -t tmpfs -o size=300k none "${mnt}"`,
    `node "${child}" "${run}" > "${reference}.full.out" 2> "${reference}.full.err"; echo $? > "${reference}.full.code"`,
    `find "${run}" | sort > "${reference}.full.files"`,
    `mount -o remount,size=4m "${mnt}"`,
    `node "${child}" "${run}" > /dev/null 2> "${reference}.resume.err"; echo $? > "${reference}.resume.code"`,
    `cp -r "${run}" "${reference}.resumed"`,
  ].join('\n');
  const r = spawnSync('unshare', ['-rm', 'sh', '-c', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const read = (suffix: string) => readFileSync(`${reference}.${suffix}`, 'utf8');
  assert.equal(read('full.code').trim(), '1');
  assert.match(
    read('full.err'),
    /could not save the checkpoint of step \d+ in .*checkpoints: ENOSPC: no space left on device, write \(writing .*step-0000\d\d\.tmp-[0-9a-f]+\/[\w.]+\)\. Nothing of it was kept; the last good checkpoint, .*step-0000\d\d, is intact\. Free some space/,
  );
  assert.ok(!/\.tmp-/.test(read('full.files')), read('full.files'));
  assert.equal(read('resume.code').trim(), '0', read('resume.err'));
  const files = (dir: string) =>
    ['model.safetensors', 'bn_stats.safetensors', 'optimizer.safetensors'].map((f) =>
      readFileSync(join(checkpointDir(dir), f)).toString('base64'),
    );
  assert.deepEqual(files(`${reference}.resumed`), files(reference));
  rmSync(mnt, { recursive: true, force: true });
});

test('CLI: a hand-edited step or trainSubset stops --resume naming file and field; `sortednet seal` accepts it; a folder killed before its first save resumes', async () => {
  const dir = fresh('cli');
  const runDir = join(dir, 'run');
  const args = ['train', '--run', runDir, '--model', 'mlp', '--data', 'mnist', '--test-subset', '32'];
  const base = [...args, '--steps', '4', '--batch-size', '8', '--gacc', '1', '--train-subset', '64'];
  assert.equal(await quiet([...base, '--checkpoint-every', '2', '--no-eval']), 0);
  const ck = join(checkpointDir(runDir), 'checkpoint.json');
  const runJson = join(runDir, 'run.json');
  edit(ck, '"step": 4', '"step": 3');
  await assert.rejects(
    quiet(['train', '--run', runDir, '--resume', '--steps', '6', '--no-eval']),
    /checkpoint\.json does not match its seal .*field 'step' \(now 3\)/,
  );
  edit(ck, '"step": 3', '"step": 4');
  edit(runJson, '"trainSubset": 64', '"trainSubset": 65');
  await assert.rejects(
    quiet(['train', '--run', runDir, '--resume', '--steps', '6', '--no-eval']),
    /run\.json does not match its seal .*field 'data\.trainSubset' \(now 65\)/,
  );
  const printed: string[] = [];
  const log = console.log;
  console.log = (m: string) => printed.push(m);
  try {
    assert.equal(await main(['seal', '--run', runDir]), 0);
  } finally {
    console.log = log;
  }
  assert.match(
    printed.join('\n'),
    /accepted .*run\.json: field 'data\.trainSubset' \(now 65\) changed since it was sealed/,
  );
  // A run killed in its first seconds (while it loads its data) leaves a folder that resumes. The
  // child's data loading is held (a preload blocks reading the MNIST files) so the kill lands there.
  const early = join(dir, 'early');
  const hold = join(dir, 'hold.mjs');
  writeFileSync(
    hold,
    [
      "import fs from 'node:fs';",
      "import { syncBuiltinESMExports } from 'node:module';",
      'const read = fs.readFileSync;',
      'fs.readFileSync = function (p, ...rest) {',
      "  if (String(p).includes('-idx')) {",
      "    fs.writeSync(1, 'loading data\\n');",
      '    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);',
      '  }',
      '  return read.call(this, p, ...rest);',
      '};',
      'syncBuiltinESMExports();',
    ].join('\n'),
  );
  const child = spawn(
    process.execPath,
    ['--import', hold, 'bin/sortednet.js', ...base.slice(0, 2), early, ...base.slice(3), '--no-eval'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (b: Buffer) => b.toString().includes('loading data') && resolve()),
  );
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  assert.ok(existsSync(join(early, 'run.json')), 'run.json is written before the data is loaded');
  assert.ok(!existsSync(join(early, 'checkpoints')), 'killed before its first save');
  assert.equal(await quiet(['train', '--run', early, '--resume', '--no-eval']), 0);
  assert.equal(readCheckpointMeta(early).step, 4);
  assert.deepEqual(JSON.parse(readFileSync(join(early, 'run.json'), 'utf8')).data, {
    name: 'mnist',
    testSubset: 32,
    trainSubset: 64,
  });
});
