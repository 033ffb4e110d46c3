/**
 * The README's library examples type-check in a user's TypeScript project against the built
 * package, under both module resolutions users have: `nodenext` (Node) and `bundler` (Vite,
 * esbuild, Next), which resolves `sortednet` to the browser entry. Node-only helpers come from
 * `sortednet/node` under both.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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
import { join, resolve } from 'node:path';

const ROOT = resolve('.');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

/** The fenced js/ts blocks of the README's library section. */
function readmeExamples(): string[] {
  const readme = readFileSync('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('## As a library'), readme.indexOf('## Your own data'));
  return [...section.matchAll(/```(?:js|ts)\n([\s\S]*?)```/g)].map((m) => m[1]);
}

const RESOLUTIONS = {
  nodenext: { module: 'nodenext', moduleResolution: 'nodenext' },
  bundler: { module: 'esnext', moduleResolution: 'bundler', lib: ['ES2022', 'DOM'] },
} as const;

test(
  "the README's TypeScript/JavaScript examples compile under moduleResolution nodenext and bundler",
  { skip: existsSync(join(ROOT, 'dist', 'src', 'node.d.ts')) ? false : 'build first (npm run build)' },
  () => {
    const examples = readmeExamples();
    assert.ok(examples.length >= 3, `the README's library section has ${examples.length} examples`);
    assert.ok(
      examples.some((e) => e.includes("from 'sortednet/node'")),
      "no README example imports Node helpers from 'sortednet/node'",
    );
    const project = mkdtempSync(join(tmpdir(), 'sortednet-types-'));
    try {
      // A user's project with the package installed (linked to this built checkout).
      mkdirSync(join(project, 'node_modules'));
      symlinkSync(ROOT, join(project, 'node_modules', 'sortednet'), 'dir');
      // npm installs the peer dependencies beside it; the examples import tfjs-core too.
      symlinkSync(
        join(ROOT, 'node_modules', '@tensorflow'),
        join(project, 'node_modules', '@tensorflow'),
        'dir',
      );
      writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module', private: true }));
      examples.forEach((code, i) => writeFileSync(join(project, `example_${i + 1}.ts`), code));
      for (const [name, options] of Object.entries(RESOLUTIONS)) {
        const tsconfig = {
          compilerOptions: {
            target: 'ES2022',
            strict: true,
            noEmit: true,
            skipLibCheck: true,
            types: ['node'],
            typeRoots: [join(ROOT, 'node_modules', '@types')],
            ...options,
          },
          include: ['*.ts'],
        };
        writeFileSync(join(project, `tsconfig.${name}.json`), JSON.stringify(tsconfig, null, 2));
        const r = spawnSync(process.execPath, [TSC, '-p', `tsconfig.${name}.json`], {
          cwd: project,
          encoding: 'utf8',
        });
        assert.equal(r.status, 0, `moduleResolution ${name}:\n${r.stdout}${r.stderr}`);
      }
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  },
);
