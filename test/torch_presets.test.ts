/**
 * The PyTorch package's presets (python/sortednet_torch/presets.py) are a second copy of the
 * TypeScript ones: every image preset of a family the package builds must be there, with the same
 * model spec for several image shapes and the same grid. Its families must be TypeScript families.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FAMILIES, PRESETS, type ModelSpec } from '../src/index.js';
import type { GridSpec } from '../src/sorted/grid.js';
import { PYTHON_PACKAGE, runPython, torchSkip } from './torch_helpers.js';

/** [channels, size, classes]: the offline datasets' shapes, and odd ones to catch rounding. */
const SHAPES: [number, number, number][] = [
  [1, 28, 10],
  [3, 32, 100],
  [1, 1, 3],
  [2, 5, 7],
];

interface Dump {
  families: string[];
  presets: Record<string, { grid: GridSpec; models: ModelSpec[] }>;
}

test('PyTorch presets equal the TypeScript presets', { skip: torchSkip }, () => {
  const py = JSON.parse(
    runPython([join(PYTHON_PACKAGE, 'tests', 'presets_dump.py'), JSON.stringify(SHAPES)]),
  ) as Dump;
  for (const f of py.families)
    assert.ok(
      (FAMILIES as readonly string[]).includes(f),
      `the PyTorch package builds '${f}', not a TypeScript family`,
    );
  // The presets the package can run: image models (no LM tokenizer) of a family it builds.
  const expected = Object.entries(PRESETS).filter(([, p]) => {
    if (p.lm) return false;
    try {
      return py.families.includes(p.model({ channels: 1, size: 28, classes: 10 }).family);
    } catch {
      return false; // a preset for token data only
    }
  });
  assert.deepEqual(
    Object.keys(py.presets).sort(),
    expected.map(([name]) => name).sort(),
    'the PyTorch package lists other presets than the TypeScript image presets of its families',
  );
  for (const [name, preset] of expected) {
    const mine = py.presets[name];
    assert.deepEqual(mine.grid, preset.grid, `preset '${name}': grid`);
    SHAPES.forEach(([channels, size, classes], i) =>
      assert.deepEqual(
        mine.models[i],
        preset.model({ channels, size, classes }),
        `preset '${name}' for ${channels}×${size}×${size}, ${classes} classes`,
      ),
    );
  }
});
