/**
 * The crash matrix of docs/reliability.md: kills at random moments and at each stage of a
 * checkpoint save, damaged files, two writers at once, a diverging run. Each case runs the training
 * process of bench/harness/train_child.ts (a tiny MLP on 256 MNIST images, 20 steps, a checkpoint
 * every step) and checks the run against an uninterrupted one, byte for byte. `flips` changes every
 * byte of a CLI run's JSON files (both checkpoint.json, run.json, latest) to each of its 255 other
 * values and loads the run after each change: every one must be refused.
 *
 *   npm run build && node dist/bench/reliability.js [--random N] [--pairs N] [--only kills|damage|pairs|nan|flips]
 *                                                   [--flip-values N] [--flip-files current,kept,run,latest]
 *   node dist/bench/reliability.js --save-cost     only: what one checkpoint of resnet-small costs
 */
import * as tf from '@tensorflow/tfjs-core';
import { Option } from 'commander';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../src/engine/backend.js';
import {
  checkpointDir,
  listCheckpoints,
  loadCheckpoint,
  readCheckpointMeta,
  saveCheckpoint,
} from '../src/io/checkpoint.js';
import { buildModel } from '../src/models/index.js';
import { getPreset } from '../src/run/presets.js';
import { sha256Hex } from '../src/io/sha256.js';
import { CHILD_STEPS, runChild, type KillPlan } from './harness/train_child.js';
import { nonNegativeIntArg } from '../src/cli/args.js';
import { benchCommand, parseBench } from './cli.js';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { verifyRunConfig } from '../src/io/checkpoint.js';

const {
  random: RANDOM_KILLS,
  pairs: PAIRS,
  only,
  saveCost,
  flipValues,
  flipFiles,
} = parseBench<{
  random: number;
  pairs: number;
  only?: string;
  saveCost?: boolean;
  flipValues: number;
  flipFiles: string;
}>(
  benchCommand('reliability', 'the crash matrix: kills, damaged files, two writers, divergence')
    .option('--random <n>', 'kills at random moments', nonNegativeIntArg, 40)
    .option('--pairs <n>', 'pairs of writers started at once on one folder', nonNegativeIntArg, 10)
    .addOption(
      new Option('--only <section>', 'run one section only (default: all)').choices([
        'kills',
        'damage',
        'pairs',
        'nan',
        'flips',
      ]),
    )
    .option('--save-cost', 'only: what one checkpoint of resnet-small costs')
    .option(
      '--flip-values <n>',
      'flips: the values tried at each byte, spread over the 255 others (default 255: all)',
      nonNegativeIntArg,
      255,
    )
    .option(
      '--flip-files <list>',
      'flips: which files, comma-separated, of current (checkpoint.json of the current step), kept (that of the kept step), run (run.json), latest',
      'current,kept,run,latest',
    ),
);
const section = (name: string) => only === undefined || only === name;

const fresh = (tag: string) => mkdtempSync(join(tmpdir(), `sortednet-matrix-${tag}-`));
const fingerprint = (runDir: string) =>
  ['model.safetensors', 'bn_stats.safetensors', 'optimizer.safetensors']
    .map((f) => sha256Hex(readFileSync(join(checkpointDir(runDir), f))))
    .join();
const quietly = async <T>(fn: () => Promise<T>): Promise<[T | Error, string[]]> => {
  const said: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => said.push(m);
  try {
    return [await fn(), said];
  } catch (e) {
    return [e as Error, said];
  } finally {
    console.warn = warn;
  }
};

if (saveCost) {
  // One checkpoint of the demo's model with its AdamW state: the price of --checkpoint-every.
  await initEngine('wasm');
  const preset = getPreset('resnet-small');
  const model = buildModel(preset.model({ channels: 1, size: 28, classes: 10 }), 1);
  const state = new Map(
    model.namedParameters().flatMap(([n, v]) => [
      [`${n}.m`, tf.zerosLike(v)],
      [`${n}.v`, tf.zerosLike(v)],
    ]),
  );
  const runDir = fresh('save');
  const ms: number[] = [];
  for (let step = 1; step <= 9; step++) {
    const t = performance.now();
    saveCheckpoint(runDir, { model, grid: preset.grid, step, seed: 1, optimizerState: state });
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  const bytes = readdirSync(checkpointDir(runDir)).reduce(
    (a, f) => a + statSync(join(checkpointDir(runDir), f)).size,
    0,
  );
  console.log(
    `resnet-small (${model.parameterCount()} parameters, ${(bytes / 1e6).toFixed(1)} MB a step folder): a save takes ${ms[4].toFixed(0)} ms (median of 9; ${ms[0].toFixed(0)}–${ms[8].toFixed(0)})`,
  );
  rmSync(runDir, { recursive: true, force: true });
  process.exit(0);
}

await initEngine('cpu');
const t0 = performance.now();
const reference = fresh('ref');
let readyAt = 0;
const ref = await runChild([reference], undefined, (l) => l === 'ready' && (readyAt = performance.now()));
if (ref.code !== 0) throw new Error(`reference run failed: ${ref.stderr}`);
const trainMs = performance.now() - readyAt;
const expected = fingerprint(reference);
console.log(`reference: ${CHILD_STEPS} steps, a checkpoint each, ${trainMs.toFixed(0)} ms of training`);

interface Outcome {
  case: string;
  kills: number;
  resumed: boolean;
  identical: boolean;
  note: string;
}
const rows: Outcome[] = [];

/** Kill once (by `killArgs` or after `killMs`), then run to the end; compare with the reference. */
async function killAndResume(name: string, killArgs: string[], kill?: KillPlan): Promise<Outcome> {
  const runDir = fresh('kill');
  let lastStep = 0;
  const killed = await runChild([runDir, ...killArgs], kill, (l) => {
    if (l.startsWith('step ')) lastStep = Number(l.slice(5));
  });
  const saved = listCheckpoints(runDir).map((c) => c.step);
  const after = await runChild([runDir]);
  const resumed = after.code === 0;
  const note =
    killed.signal !== 'SIGKILL'
      ? `not killed (exit ${killed.code})`
      : `killed after step ${lastStep}; complete folders [${saved.join(', ')}]` +
        (after.stderr.includes('taking over the lock') ? '; stale lock taken over' : '');
  const outcome = {
    case: name,
    kills: killed.signal === 'SIGKILL' ? 1 : 0,
    resumed,
    identical: resumed && fingerprint(runDir) === expected,
    note: resumed ? note : `${note}; resume failed: ${after.stderr.trim()}`,
  };
  rmSync(runDir, { recursive: true, force: true });
  return outcome;
}

// 1. Kills inside a save, at each stage, at the first save (nothing to fall back on) and later ones.
for (const stage of section('kills') ? ['written', 'renamed', 'latest', 'pruned'] : []) {
  for (const n of [1, 2, 7])
    rows.push(await killAndResume(`kill at '${stage}' of save ${n}`, ['--kill', `${stage}:${n}`]));
}
// 2. Kills at random moments: after a random step's line (0: before the first step), plus a random
// part of one step's time, so that kills spread over the run whatever the machine's speed.
let seed = 7;
const uniform = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) as number;
for (let i = 0; i < (section('kills') ? RANDOM_KILLS : 0); i++) {
  const step = Math.floor(uniform() * CHILD_STEPS);
  const plan = { after: step === 0 ? 'ready' : `step ${step}`, ms: uniform() * (trainMs / CHILD_STEPS) };
  rows.push(await killAndResume('kill at a random moment', [], plan));
}

if (section('kills')) printKills();

function printKills(): void {
  const summary = new Map<string, { trials: number; kills: number; resumed: number; identical: number }>();
  for (const r of rows) {
    const s = summary.get(r.case) ?? { trials: 0, kills: 0, resumed: 0, identical: 0 };
    s.trials++;
    s.kills += r.kills;
    s.resumed += Number(r.resumed);
    s.identical += Number(r.identical);
    summary.set(r.case, s);
  }
  console.log(
    '\n| kill | trials | killed | resumed | identical to uninterrupted |\n|---|---:|---:|---:|---:|',
  );
  for (const [k, s] of summary)
    console.log(`| ${k} | ${s.trials} | ${s.kills} | ${s.resumed} | ${s.identical} |`);
  for (const r of rows.filter((r) => !r.identical)) console.log(`FAILED: ${r.case}: ${r.note}`);
  const randomNotes = rows.filter((r) => r.case.includes('random')).map((r) => r.note);
  console.log(
    `random kills landed after steps ${randomNotes.map((n) => /after step (\d+)/.exec(n)?.[1] ?? '-').join(' ')}; ` +
      `${randomNotes.filter((n) => n.includes('stale lock')).length} resumes took over a stale lock`,
  );
}

// 3. Damaged files: each is refused with its name, or (the pointer) falls back with a message.
if (section('damage')) console.log('\n| damage | outcome |\n|---|---|');
const damages: [string, (dir: string, root: string) => void][] = [
  ['one byte of model.safetensors flipped', (d) => flip(join(d, 'model.safetensors'))],
  ['optimizer.safetensors truncated', (d) => truncate(join(d, 'optimizer.safetensors'))],
  ['bn_stats.safetensors deleted', (d) => unlinkSync(join(d, 'bn_stats.safetensors'))],
  [
    'checkpoint.json not JSON',
    (d) => writeFileSync(join(d, 'checkpoint.json'), '{"format": "sortednet-chec'),
  ],
  ['checkpoint.json is null', (d) => writeFileSync(join(d, 'checkpoint.json'), 'null')],
  ['latest empty', (_d, r) => writeFileSync(join(r, 'latest'), '')],
  ['latest deleted', (_d, r) => unlinkSync(join(r, 'latest'))],
  ['latest names a missing folder', (_d, r) => writeFileSync(join(r, 'latest'), 'step-999999\n')],
  ['the current step folder deleted', (d) => rmSync(d, { recursive: true })],
];
for (const [name, damage] of section('damage') ? damages : []) {
  const runDir = fresh('damage');
  cpSync(reference, runDir, { recursive: true });
  damage(checkpointDir(runDir), join(runDir, 'checkpoints'));
  const [result, said] = await quietly(() => loadCheckpoint(runDir));
  const outcome =
    result instanceof Error
      ? `refused: ${result.message.split('\n')[0].replaceAll(runDir, 'RUN')}`
      : `loaded step ${result.meta.step}; said: ${said.join(' ').replaceAll(runDir, 'RUN')}`;
  console.log(`| ${name} | ${outcome} |`);
  rmSync(runDir, { recursive: true, force: true });
}

// 3b. Every one-byte change of the JSON files of a run made by the CLI (two checkpoints kept).
if (section('flips')) {
  // In memory where the machine has it (tmpfs): a million small writes and reads time the checks,
  // not the disk (opening a file on this project's VM disk cost more than the checks themselves).
  const runDir = existsSync('/dev/shm')
    ? mkdtempSync(join('/dev/shm', 'sortednet-matrix-flips-'))
    : fresh('flips');
  // The run is made by the command itself, as a user makes it (dist/bench → bin/sortednet.js).
  const cli = fileURLToPath(new URL('../../bin/sortednet.js', import.meta.url));
  const made = spawnSync(
    process.execPath,
    [cli, 'train', '--run', runDir, '--model', 'mlp', '--data', 'mnist', '--steps', '2', '--batch-size', '8']
      .concat(['--gacc', '1', '--train-subset', '64', '--test-subset', '32', '--checkpoint-every', '1'])
      .concat(['--no-eval']),
    { encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(`the flip test's run failed (exit ${made.status}): ${made.stderr}`);
  const root = join(runDir, 'checkpoints');
  const current = join(root, 'step-000002');
  const all: [string, string, string, string][] = [
    ['current', 'checkpoint.json (current)', join(current, 'checkpoint.json'), runDir],
    [
      'kept',
      'checkpoint.json (kept, step 1)',
      join(root, 'step-000001', 'checkpoint.json'),
      join(root, 'step-000001'),
    ],
    ['run', 'run.json', join(runDir, 'run.json'), runDir],
    ['latest', 'checkpoints/latest', join(root, 'latest'), runDir],
  ];
  const wanted = flipFiles.split(',').map((f) => f.trim());
  const unknown = wanted.filter((w) => !all.some(([key]) => key === w));
  if (unknown.length > 0)
    throw new Error(
      `--flip-files: unknown file '${unknown.join(', ')}'; choose from current, kept, run, latest`,
    );
  const files = all.filter(([key]) => wanted.includes(key)).map(([, ...rest]) => rest);
  // What a command does before it uses a run: resolve the checkpoint (checking checkpoint.json
  // against latest) and read run.json (checking it too).
  const load = (dir: string) => {
    checkpointDir(dir);
    verifyRunConfig(runDir, readFileSync(join(runDir, 'run.json')));
  };
  console.log(
    '\n| file | bytes | changes tried | refused | unnoticed | seconds |\n|---|---:|---:|---:|---:|---:|',
  );
  const warn = console.warn;
  console.warn = () => {}; // the notices of each refusal
  let allTried = 0;
  let allUnnoticed = 0;
  const tAll = performance.now();
  for (const [name, path, dir] of files) {
    const original = readFileSync(path);
    const t = performance.now();
    let tried = 0;
    const unnoticed: string[] = [];
    const step = 255 / Math.max(1, Math.min(255, flipValues));
    for (let i = 0; i < original.length; i++) {
      for (let k = 0; k < 255; k += step) {
        // Offsets 1..255 from the original value (all of them by default), rotated by position.
        const v = (original[i] + 1 + ((Math.floor(k) + i) % 255)) % 256;
        const bytes = Buffer.from(original);
        bytes[i] = v;
        writeFileSync(path, bytes);
        tried++;
        // Progress on stderr: a long pass stopped part-way still says how far it got.
        if (tried % 20000 === 0)
          process.stderr.write(
            `flips: ${name}: byte ${i} of ${original.length}, ${tried} changes, ${unnoticed.length} unnoticed, ${((performance.now() - t) / 1000).toFixed(0)} s\n`,
          );
        try {
          load(dir);
          unnoticed.push(`byte ${i}: ${original[i]} → ${v}`);
        } catch {
          // refused, as it must be
        }
      }
    }
    writeFileSync(path, original);
    load(dir);
    const s = ((performance.now() - t) / 1000).toFixed(0);
    console.log(
      `| ${name} | ${original.length} | ${tried} | ${tried - unnoticed.length} | ${unnoticed.length} | ${s} |`,
    );
    for (const u of unnoticed.slice(0, 5)) console.log(`UNNOTICED: ${name} ${u}`);
    allTried += tried;
    allUnnoticed += unnoticed.length;
  }
  console.warn = warn;
  console.log(
    `\nflips: ${allTried - allUnnoticed} of ${allTried} one-byte changes detected (${allUnnoticed} unnoticed) in ${((performance.now() - tAll) / 1000).toFixed(0)} s`,
  );
  rmSync(runDir, { recursive: true, force: true });
}

// 4. Two writers started at the same moment on one folder.
const pairs = new Map<string, number>();
for (let i = 0; i < (section('pairs') ? PAIRS : 0); i++) {
  const runDir = fresh('pair');
  const [a, b] = await Promise.all([runChild([runDir]), runChild([runDir])]);
  const trained = (r: typeof a) => r.stdout.includes('step 1\n');
  const outcome =
    a.code === 0 && b.code === 0
      ? trained(a) && trained(b)
        ? 'both trained: LOCK FAILED'
        : 'one after the other (the second found the run finished and trained no step)'
      : [a, b].some((r) => r.code !== 0 && /is in use by PID/.test(r.stderr)) &&
          [a, b].some((r) => r.code === 0)
        ? 'one finished, the other refused (in use by PID …)'
        : `other: ${a.stderr.trim()} / ${b.stderr.trim()}`;
  const identical = existsSync(join(runDir, 'checkpoints')) && fingerprint(runDir) === expected;
  const key = `${outcome}; run folder ${identical ? '' : 'NOT '}identical to the uninterrupted run`;
  pairs.set(key, (pairs.get(key) ?? 0) + 1);
  rmSync(runDir, { recursive: true, force: true });
}
if (section('pairs')) {
  console.log(`\ntwo writers started at once on one folder, ${PAIRS} pairs:`);
  for (const [k, n] of pairs) console.log(`  ${n} × ${k}`);
}

// 5. Divergence: --lr 1e6, a checkpoint every step.
if (section('nan')) {
  const diverged = fresh('nan');
  const nan = await runChild([diverged, '--lr', '1e6']);
  const last = await loadCheckpoint(diverged);
  const finite = last.model.namedParameters().every(([, v]) => v.dataSync().every(Number.isFinite));
  console.log(
    `\nlr 1e6: exit code ${nan.code}; "${nan.stderr.trim().split('. ')[0]}"; last checkpoint step ${readCheckpointMeta(diverged).step}, all weights finite: ${finite}`,
  );
}
console.log(`\n${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
rmSync(reference, { recursive: true, force: true });

function flip(path: string): void {
  const b = readFileSync(path);
  b[b.length >> 1] ^= 0x40;
  writeFileSync(path, b);
}
function truncate(path: string): void {
  const b = readFileSync(path);
  writeFileSync(path, b.subarray(0, b.length >> 1));
}
