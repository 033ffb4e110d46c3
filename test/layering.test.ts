/**
 * The layout is the architecture: each folder of src/ imports only folders BELOW it, so layers
 * never reach up into the models or drivers that use them. This test reads every import.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bottom to top; a folder may import folders of a LOWER rank only (type imports included). */
const RANK: Record<string, number> = {
  engine: 0,
  tokenizer: 0,
  sorted: 1,
  data: 1,
  nn: 2,
  dynamic: 3,
  models: 4,
  train: 5,
  io: 6,
  infer: 7,
  export: 7,
  experiments: 7,
  deploy: 8,
  serve: 9,
  run: 9,
  cli: 10,
};

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (name.endsWith('.ts')) yield p;
  }
}

const folderOf = (file: string): string | undefined => {
  const parts = relative(root, file).split(sep);
  return parts.length > 1 ? parts[0] : undefined; // src/index.ts, src/node.ts: entry points
};

test('layering: every src/ folder imports only the folders below it', () => {
  const violations: string[] = [];
  const folders = new Set<string>();
  for (const file of sources(root)) {
    const from = folderOf(file);
    if (!from) continue;
    folders.add(from);
    const text = readFileSync(file, 'utf8');
    // `import … from`, `export … from`, side-effect `import '…'` and dynamic `import('…')`.
    const specifiers = /(?:(?:import|export)[^'"]*?from\s+|import\s*\(?\s*)'(\.[^']+)'/g;
    for (const m of text.matchAll(specifiers)) {
      const to = folderOf(resolve(dirname(file), m[1]));
      if (!to || to === from) continue;
      if (!(from in RANK) || !(to in RANK) || RANK[to] >= RANK[from]) {
        violations.push(`${relative(root, file)} imports ${m[1]} (${from} → ${to})`);
      }
    }
  }
  for (const f of folders) assert.ok(f in RANK, `src/${f} has no place in the layer order of this test`);
  assert.deepEqual(violations, []);
});
