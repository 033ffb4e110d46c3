/** PyTorch's grid and sub-model draws (python/sortednet_torch) equal the TypeScript trainer's, id for id. */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, type ModelSpec } from '../src/models/index.js';
import { tinyMobileNetV2 } from './tiny_models.js';
import { Grid, type GridSpec } from '../src/sorted/grid.js';
import { SubModelSampler, type SamplerOptions } from '../src/sorted/sample.js';
import { createRng, streamSeed } from '../src/data/random.js';
import { PYTHON_PACKAGE, runPython, scratch, smallResNet, torchSkip } from './torch_helpers.js';

interface Case {
  spec: ModelSpec;
  grid: GridSpec;
  sampler: SamplerOptions;
  gAcc: number;
  seed: number;
}

const resnet: ModelSpec = smallResNet([8, 16], [2, 2]);
const mobilenet: ModelSpec = {
  family: 'mobilenetv2',
  config: tinyMobileNetV2({ inChannels: 3, imageSize: 15, classes: 5 }),
};
const cases: Case[] = [
  {
    spec: { family: 'mlp', config: { inputs: 20, hidden: [16, 16, 8], classes: 3 } },
    grid: { depth: [3, 1, 2], width: [1, 0.25, 0.5] },
    sampler: {},
    gAcc: 4,
    seed: 1,
  },
  {
    spec: resnet,
    grid: { depth: [2, 4], width: [0.5, 1], layers: { 'stages.0.0.conv1': [2, 8], stem: [4, 8] } },
    sampler: { alwaysIncludeLargest: true, alwaysIncludeSmallest: true },
    gAcc: 3,
    seed: 12,
  },
  {
    spec: mobilenet,
    grid: { depth: [2, 3], expand: [0.5, 1], layers: { lastConv: [4, 16] } },
    sampler: { weights: [1, 0, 2, 0, 3, 0, 4, 5] },
    gAcc: 2,
    seed: 5,
  },
  {
    spec: {
      family: 'transformer',
      config: { task: 'lm', vocab: 32, dim: 16, heads: 4, headDim: 4, ffn: 32, layers: 3, maxLen: 8 },
    },
    grid: { depth: [1, 2, 3], heads: [2, 4], ffn: [0.25, 1], embed: [0.5, 1] },
    sampler: {
      weights: {
        'depth=3,heads=4,ffn=1,embed=1': 3,
        'depth=1,heads=2,ffn=0.25,embed=0.5': 1,
        'depth=2,heads=2,ffn=1,embed=0.5': 2,
      },
    },
    gAcc: 2,
    seed: 2 ** 40 + 3, // beyond 32 bits: hashed (streamSeed)
  },
  {
    // Per-block widths (Mix'n'Match): entries ordered by FLOPs, which PyTorch must count alike.
    spec: {
      family: 'transformer',
      config: {
        task: 'classify',
        vocab: 32,
        dim: 16,
        heads: 4,
        headDim: 4,
        ffn: 32,
        layers: 3,
        maxLen: 8,
        classes: 3,
      },
    },
    grid: {
      depth: [2, 3],
      layers: { 'blocks.0.ffn': [8, 32], 'blocks.1.attn': [1, 4], 'blocks.2.ffn': [4, 32] },
    },
    sampler: {},
    gAcc: 3,
    seed: 9,
  },
];

before(() => initEngine('wasm'));

test('grid order, ids and per-step sub-model draws match the TypeScript trainer', { skip: torchSkip }, () => {
  const file = join(scratch('torch-grid-'), 'cases.json');
  writeFileSync(file, JSON.stringify(cases));
  const got = JSON.parse(runPython([join(PYTHON_PACKAGE, 'tests', 'grid_draws.py'), file])) as {
    ids: string[];
    draws: string[][];
  }[];
  cases.forEach((c, k) => {
    const model = buildModel(c.spec);
    const grid = new Grid(c.grid, model);
    const draws = Array.from({ length: 10 }, (_, step) => {
      const rng = createRng(streamSeed(c.seed, 7919, step));
      return new SubModelSampler(grid, c.sampler, () => rng.next()).draw(c.gAcc).map((e) => e.id);
    });
    assert.deepEqual(
      got[k].ids,
      grid.entries.map((e) => e.id),
      `${c.spec.family}: grid ids`,
    );
    assert.deepEqual(got[k].draws, draws, `${c.spec.family}: draws`);
    model.dispose();
  });
});
