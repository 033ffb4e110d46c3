/**
 * Scale-out through PyTorch: a run started by the TypeScript trainer is continued by
 * `python -m sortednet_torch.train` under torchrun (2 CPU ranks, gloo, DDP), and
 *  - draws the same sub-models and sees the same data as the TypeScript trainer would (losses match),
 *  - equals a single-process continuation on the same global batches (weights within 1e-5),
 *  - writes a checkpoint that `sortednet eval` loads and evaluates.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, type ModelSpec } from '../src/models/index.js';
import { Grid, type GridSpec } from '../src/sorted/grid.js';
import { train, type StepLog } from '../src/train/trainer.js';
import { trainRun } from '../src/run/train_run.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { checkpointDir, readCheckpointMeta } from '../src/io/checkpoint.js';
import { decodeSafetensors } from '../src/io/safetensors.js';
import { loadDataset } from '../src/data/registry.js';
import { loadMobyDick } from '../src/data/text.js';
import { byteTokenSplit } from '../src/data/tokens.js';
import { subset, type ImageDataset } from '../src/data/dataset.js';
import type { RunConfig } from '../src/run/run_config.js';
import { runPython, scratch, skipOnTorchCrash, smallResNet, torchSkip } from './torch_helpers.js';

const CLI = fileURLToPath(new URL('../../bin/sortednet.js', import.meta.url));
const spec: ModelSpec = smallResNet([8, 16], [2, 1]);
const grid: GridSpec = { depth: [2, 3], width: [0.5, 1] };
const run: RunConfig = {
  model: spec,
  grid,
  data: { name: 'mnist', trainSubset: 512, testSubset: 128 },
  train: { steps: 8, batchSize: 32, gAcc: 2, warmupSteps: 2, seed: 3, checkpointEvery: 4 },
  eval: { calibrationBatches: 2, latencyReps: 1 },
};

let data: ImageDataset;
let root: string;
/** The TypeScript trainer's own steps 5–8 (the reference a continuation must follow). */
const reference: StepLog[] = [];

before(async () => {
  if (torchSkip) return;
  await initEngine('wasm');
  data = subset(loadDataset('mnist').train, 512, 1); // what run.json's data selects
  root = scratch('torch-ddp-');
  const tc = resolveTrainConfig(run.train);
  // The run as `sortednet train` leaves it after 4 of 8 steps.
  const dir = join(root, 'ts');
  writeFileSync(join(root, 'run.json'), JSON.stringify(run, null, 2));
  cpSync(join(root, 'run.json'), join(dir, 'run.json'));
  const m = buildModel(spec, tc.seed);
  await trainRun(dir, m, new Grid(grid, m), data, tc, { datasetName: 'mnist', stopAfter: 4 });
  m.dispose();
  // The TypeScript trainer run through all 8 steps, for reference.
  const r = buildModel(spec, tc.seed);
  await train(r, new Grid(grid, r), data, tc, { onStep: (s) => s.step > 4 && reference.push(s) });
  r.dispose();
  for (const name of ['ddp', 'single']) cpSync(dir, join(root, name), { recursive: true });
});

/**
 * A continuation follows the TypeScript trainer's own steps: the same sub-models per step and (same
 * data, same optimizer) the same losses within 1e-4. TORCH_TEST_VERBOSE prints the largest gap.
 */
function assertFollows(log: StepLog[], reference: StepLog[], what: string): void {
  assert.deepEqual(
    log.map((r) => r.subModels),
    reference.map((r) => r.subModels),
    `${what}: sub-models per step`,
  );
  const gaps = log.map((r, i) => Math.abs(r.loss - reference[i].loss));
  if (process.env.TORCH_TEST_VERBOSE)
    console.log(`${what} vs TypeScript: max |loss gap| ${Math.max(...gaps)}`);
  gaps.forEach((g, i) =>
    assert.ok(
      g < 1e-4,
      `${what}, step ${log[i].step}: loss ${log[i].loss} vs TypeScript ${reference[i].loss}`,
    ),
  );
}

const pyLog = (dir: string) =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => r.ranks !== undefined) as (StepLog & { ranks: number })[];

function weights(dir: string) {
  return decodeSafetensors(readFileSync(join(checkpointDir(dir), 'model.safetensors'))).tensors;
}

test(
  'torchrun DDP (2 CPU ranks) continues a TypeScript run; sortednet eval loads it, sortednet train resumes it',
  { skip: torchSkip },
  async (t) =>
    skipOnTorchCrash(t, async () => {
      const dir = join(root, 'ddp');
      runPython(
        [
          '-m',
          'sortednet_torch.torchrun',
          '--standalone',
          '--monitor_interval',
          '0.1',
          '--nproc_per_node',
          '2',
          '-m',
          'sortednet_torch.train',
          '--run',
          dir,
          '--calibrate-batches',
          '2',
          '--quiet',
        ],
        { timeoutMs: 180_000 },
      );
      const log = pyLog(dir);
      assert.deepEqual(
        log.map((r) => r.step),
        [5, 6, 7, 8],
      );
      assert.ok(log.every((r) => r.ranks === 2));
      assertFollows(log, reference, 'resnet, 2 ranks');
      assert.equal(readCheckpointMeta(dir).step, 8);
      const ev = spawnSync(process.execPath, [CLI, 'eval', '--run', dir], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      assert.equal(ev.status, 0, `sortednet eval failed:\n${ev.stdout}\n${ev.stderr}`);
      const rows = JSON.parse(readFileSync(join(dir, 'eval.json'), 'utf8')) as {
        id: string;
        accuracy: number;
      }[];
      assert.deepEqual(
        rows.map((r) => r.id).sort(),
        new Grid(grid, buildModel(spec)).entries.map((e) => e.id).sort(),
      );
      for (const row of rows)
        assert.ok(row.accuracy >= 0 && row.accuracy <= 1, `${row.id}: accuracy ${row.accuracy}`);
      // And back: the TypeScript trainer resumes what PyTorch wrote.
      const more = resolveTrainConfig({ ...run.train, steps: 10 });
      const m = buildModel(spec, more.seed);
      await trainRun(dir, m, new Grid(grid, m), data, more, { resume: true, datasetName: 'mnist' });
      m.dispose();
      assert.equal(readCheckpointMeta(dir).step, 10);
    }),
);

test('DDP with 2 ranks equals one process on the same global batches (1e-5)', { skip: torchSkip }, (t) =>
  skipOnTorchCrash(t, () => {
    if (!existsSync(join(root, 'ddp', 'checkpoints', 'step-000008')))
      return t.skip('the DDP run of the test above did not complete');
    const single = join(root, 'single');
    runPython(['-m', 'sortednet_torch.train', '--run', single, '--calibrate-batches', '0', '--quiet']);
    const a = weights(join(root, 'ddp', 'checkpoints', 'step-000008')); // before the TypeScript resume;
    const b = weights(single);
    const before = weights(join(root, 'ts'));
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    let worst = 0;
    let moved = 0;
    for (const [name, t] of a) {
      const u = b.get(name)!.data;
      const w = before.get(name)!.data;
      t.data.forEach((v, i) => {
        worst = Math.max(worst, Math.abs(v - u[i]));
        moved = Math.max(moved, Math.abs(v - w[i]));
      });
    }
    assert.ok(moved > 1e-3, `training moved no weight (max change ${moved})`);
    if (process.env.TORCH_TEST_VERBOSE) console.log(`2 ranks vs 1 process: max |weight gap| ${worst}`);
    assert.ok(worst <= 1e-5, `2-rank DDP and 1 process differ by ${worst} > 1e-5`);
  }),
);

test(
  'a sorted transformer LM run continues in PyTorch with the TypeScript draws and losses',
  { skip: torchSkip },
  async () => {
    const dir = join(root, 'lm');
    const lmSpec: ModelSpec = {
      family: 'transformer',
      config: { task: 'lm', vocab: 257, dim: 32, heads: 2, headDim: 16, ffn: 64, layers: 3, maxLen: 32 },
    };
    const lmGrid: GridSpec = { depth: [1, 2, 3], heads: [1, 2] };
    const tc = resolveTrainConfig({
      steps: 6,
      batchSize: 8,
      gAcc: 3,
      warmupSteps: 2,
      seed: 4,
      checkpointEvery: 3,
    });
    const data = byteTokenSplit('moby-dick', loadMobyDick(), 32).train;
    const m = buildModel(lmSpec, 1);
    await trainRun(dir, m, new Grid(lmGrid, m), data, tc, { datasetName: 'moby-dick', stopAfter: 3 });
    m.dispose();
    const ref: StepLog[] = [];
    const r = buildModel(lmSpec, 1);
    await train(r, new Grid(lmGrid, r), data, tc, { onStep: (s) => s.step > 3 && ref.push(s) });
    r.dispose();
    runPython(['-m', 'sortednet_torch.train', '--run', dir, '--quiet']);
    const log = pyLog(dir);
    assertFollows(log, ref, 'transformer LM');
    assert.equal(readCheckpointMeta(dir).step, 6);
  },
);
