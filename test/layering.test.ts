/**
 * The layout is the architecture: each folder of src/ imports only folders BELOW it, so layers
 * never reach up into the models or drivers that use them. This test reads every import.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bottom to top; a folder may import folders of a LOWER rank only (type imports included). */
const RANK: Record<string, number> = {
  schema: 0,
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

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const root = join(repo, 'src');

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (name.endsWith('.ts')) yield p;
  }
}

/** `import … from`, `export … from`, side-effect `import '…'` and, unless `staticOnly`, dynamic `import('…')`. */
function imports(file: string, staticOnly = false): string[] {
  const text = readFileSync(file, 'utf8');
  const re = staticOnly
    ? /(?:(?:import|export)[^'"]*?from\s+|^import\s+)'([^']+)'/gm
    : /(?:(?:import|export)[^'"]*?from\s+|import\s*\(?\s*)'([^']+)'/g;
  return [...text.matchAll(re)].map((m) => m[1]);
}
const relativeImports = (file: string, staticOnly = false) =>
  imports(file, staticOnly).filter((s) => s.startsWith('.'));

/** The .ts source a relative import of `from` names ('./x.js' is compiled from './x.ts'). */
const sourceOf = (from: string, spec: string) => resolve(dirname(from), spec).replace(/\.js$/, '.ts');

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
    for (const spec of relativeImports(file)) {
      const to = folderOf(resolve(dirname(file), spec));
      if (!to || to === from) continue;
      if (!(from in RANK) || !(to in RANK) || RANK[to] >= RANK[from]) {
        violations.push(`${relative(root, file)} imports ${spec} (${from} → ${to})`);
      }
    }
  }
  for (const f of folders) assert.ok(f in RANK, `src/${f} has no place in the layer order of this test`);
  assert.deepEqual(violations, []);
});

const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
/** Folders only the Node side may use, whatever their files import: the command line and the server. */
const NODE_ONLY = ['cli', 'serve'];

test('layering: the browser entry (src/index.ts) reaches no Node built-in, cli/ or serve/', () => {
  // Follows static imports only: a dynamic import() is how a module loads Node-only code on demand
  // (engine/backend.ts loads the native kernels that way), which a bundler leaves out.
  const entry = join(root, 'index.ts');
  const via = new Map<string, string>([[entry, '']]);
  const queue = [entry];
  const violations: string[] = [];
  const chain = (f: string): string => {
    const parent = via.get(f);
    return parent ? `${chain(parent)} → ${relative(root, f)}` : relative(root, f);
  };
  while (queue.length) {
    const file = queue.shift()!;
    const folder = folderOf(file);
    if (folder && NODE_ONLY.includes(folder)) violations.push(`${chain(file)} (${folder}/ is Node-only)`);
    for (const spec of imports(file, true)) {
      if (NODE_BUILTINS.has(spec)) violations.push(`${chain(file)} imports '${spec}'`);
      if (!spec.startsWith('.')) continue;
      const to = sourceOf(file, spec);
      if (!via.has(to)) {
        via.set(to, file);
        queue.push(to);
      }
    }
  }
  assert.ok(
    via.size > 20,
    `followed only ${via.size} files from src/index.ts; is the import pattern broken?`,
  );
  assert.deepEqual(violations, []);
});

test('layering: the library entries (src/index.ts, src/node.ts) never import the command line', () => {
  const violations: string[] = [];
  for (const entry of ['index.ts', 'node.ts']) {
    for (const spec of relativeImports(join(root, entry))) {
      const to = folderOf(sourceOf(join(root, entry), spec));
      if (to === 'cli') violations.push(`src/${entry} imports ${spec}`);
    }
  }
  assert.deepEqual(violations, []);
});

/**
 * The bench scripts sit beside the CLI, not on it: they call src/ (the run layer for run folders),
 * never test/ code, and from src/cli/ only the command-line helpers both kinds of program share.
 */
const BENCH_MAY_USE_FROM_CLI = ['cli/args.ts', 'cli/errors.ts'];

test('layering: bench/ imports src/ but not test/, and from src/cli/ only the shared argument helpers', () => {
  const bench = join(repo, 'bench');
  const violations: string[] = [];
  for (const file of sources(bench)) {
    const name = relative(bench, file).split(sep).join('/');
    for (const spec of relativeImports(file)) {
      const to = relative(repo, sourceOf(file, spec)).split(sep).join('/');
      const inSrc = to.startsWith('src/') ? to.slice('src/'.length) : undefined;
      if (to.startsWith('bench/')) continue;
      if (inSrc === undefined) violations.push(`bench/${name} imports ${spec} (outside src/ and bench/)`);
      else if (inSrc.startsWith('cli/') && !BENCH_MAY_USE_FROM_CLI.includes(inSrc))
        violations.push(`bench/${name} imports ${spec} (the CLI's own code; use src/run/)`);
    }
  }
  // The shared helpers stay generic: they import no other part of src/.
  for (const f of BENCH_MAY_USE_FROM_CLI)
    for (const spec of relativeImports(join(root, f))) violations.push(`src/${f} imports ${spec}`);
  assert.deepEqual(violations, []);
});

/**
 * cli/ holds commands and their argument parsing only: one file per command in commands/, the
 * program (main.ts) and the helpers every command shares. Run logic belongs in src/run/, where the
 * bench and the library reach it too. Another file may only forward (`export … from`) to src/.
 */
const CLI_FILES = ['args.ts', 'command.ts', 'errors.ts', 'main.ts'];

test('layering: src/cli/ holds only commands/, the program and the argument helpers', () => {
  const cli = join(root, 'cli');
  const violations: string[] = [];
  for (const file of sources(cli)) {
    const name = relative(cli, file).split(sep).join('/');
    if (name.startsWith('commands/') && !name.slice('commands/'.length).includes('/')) continue;
    if (CLI_FILES.includes(name)) continue;
    const code = readFileSync(file, 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/.*$/gm, '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    if (!code.every((l) => /^export\s.*\sfrom\s+'[^']+';$/.test(l)))
      violations.push(`src/cli/${name} holds code that is not a command (move it to src/run/)`);
  }
  assert.deepEqual(violations, []);
});
